package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// LookupEnv finds environment variables; os.LookupEnv in production, a map in tests.
type LookupEnv func(name string) (string, bool)

// Load reads and validates the file at path. A relative data_dir is relative to the file's
// directory, not to wherever the command runs: `ingest status --config /etc/ingest/config.yaml`
// finds the service from any directory.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data, path, os.LookupEnv)
	if cfg.DataDir != "" && !filepath.IsAbs(cfg.DataDir) {
		if abs, aerr := filepath.Abs(path); aerr == nil {
			cfg.DataDir = filepath.Join(filepath.Dir(abs), cfg.DataDir)
		}
	}
	return cfg, err
}

// Parse reads a configuration from YAML, expanding ${VAR} and ${VAR:-default} in values. Every key
// not present keeps its Default. It checks the YAML only — syntax, known keys, types, the
// environment — and reports every problem at once as *Problems; whether the values make sense
// together is Validate's question, and the components' (see service.Check).
func Parse(data []byte, source string, env LookupEnv) (Config, error) {
	cfg := Default()
	origin := &Origin{Name: source, lines: lines{}}
	var problems []Problem
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return cfg, NewProblems(source, []Problem{{Message: strings.TrimPrefix(err.Error(), "yaml: ")}})
	}
	cfg.Origin = origin
	if len(doc.Content) == 0 { // an empty file means "all defaults"
		return cfg, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return cfg, NewProblems(source, []Problem{{Line: root.Line, Message: "the top level must be a mapping of keys (data_dir:, nats:, http:, …)"}})
	}

	w := walker{env: env, expandEnv: true, lines: map[int]string{}, keys: origin.lines}
	w.walk(root, reflect.TypeOf(cfg), "")
	problems = append(problems, w.problems...)
	if err := root.Decode(&cfg); err != nil {
		problems = append(problems, w.decodeProblems(err)...)
	}
	cfg.Origin = origin
	if p := NewProblems(source, problems); p != nil {
		return cfg, p
	}
	return cfg, nil
}

// Origin says where a configuration was read from, so that problems found later can name their
// lines.
type Origin struct {
	Name  string
	lines lines
}

// Line is the line key was written on, or that of its nearest enclosing key; 0 when unknown.
func (o *Origin) Line(key string) int {
	if o == nil {
		return 0
	}
	return o.lines.line(key)
}

// Problems words list for cfg's file, each problem with its line; nil when list is empty.
func (c Config) Problems(list []Problem) error {
	source := "(built in code)"
	if c.Origin != nil {
		source = c.Origin.Name
		c.Origin.lines.locate(list)
	}
	if p := NewProblems(source, list); p != nil {
		return p
	}
	return nil
}

// Section is a part of the configuration that belongs to a component (a vendor's keys): Parse
// keeps it as written, ${ENV} expanded and lines known, and the component decodes it into its
// own type with Decode.
type Section struct {
	node *yaml.Node
}

// UnmarshalYAML keeps the node for Decode.
func (s *Section) UnmarshalYAML(n *yaml.Node) error {
	s.node = n
	return nil
}

// Decode fills into — a pointer to the component's configuration, holding its defaults — from the
// section, with the same checks as the rest of the file: unknown keys (with a suggestion), wrong
// types, each with its line. path is the section's key ("vendors.<name>").
func (s Section) Decode(into any, path string) []Problem {
	if s.node == nil {
		return nil
	}
	n := s.node
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Value == "") {
		return nil // "<name>:" with nothing under it: all defaults
	}
	if n.Kind != yaml.MappingNode {
		return []Problem{{Line: n.Line, Key: path, Message: "want a mapping of keys"}}
	}
	w := walker{lines: map[int]string{}, keys: lines{}}
	w.walk(n, reflect.TypeOf(into), path)
	problems := w.problems
	if err := n.Decode(into); err != nil {
		problems = append(problems, w.decodeProblems(err)...)
	}
	return problems
}

// walker checks keys against the Config struct and expands environment variables in place, so that
// line numbers in later decode errors still point into the file the user wrote.
type walker struct {
	env       LookupEnv
	expandEnv bool // false for a Section decoded later: it was expanded with the whole file
	problems  []Problem
	lines     map[int]string // line → dotted key, to name keys in decoder errors
	keys      lines          // dotted key → line, to place problems found later
}

var sectionType = reflect.TypeOf(Section{})

// decodeProblems turns the decoder's errors into problems naming their keys.
func (w *walker) decodeProblems(err error) []Problem {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []Problem{{Message: err.Error()}}
	}
	var out []Problem
	for _, e := range te.Errors {
		out = append(out, w.describe(e))
	}
	return out
}

var yamlUnmarshaler = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode {
		if path != "" {
			w.lines[n.Line] = path
			w.keys[path] = n.Line
		}
		if w.expandEnv {
			w.expand(n, path)
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == sectionType {
		w.walkAny(n, path) // its component checks the keys when it decodes it
		return
	}
	// Types that read themselves (Duration, After, StringList) check their own shape; a struct
	// that only fills in its defaults first (a source) has its keys checked like any other.
	if reflect.PointerTo(t).Implements(yamlUnmarshaler) &&
		!(n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct && len(yamlFields(t)) > 0) {
		w.walkAny(n, path)
		return
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			w.lines[k.Line] = key
			w.keys[key] = k.Line
			f, ok := fields[k.Value]
			if !ok {
				w.problems = append(w.problems, Problem{Line: k.Line, Message: fmt.Sprintf("unknown key %q%s", key, suggest(k.Value, fields))})
				continue
			}
			w.walk(v, f.Type, key)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			w.keys[key] = item.Line
			w.walk(item, t.Elem(), key)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := join(path, n.Content[i].Value)
			w.lines[n.Content[i].Line] = key
			w.keys[key] = n.Content[i].Line
			w.walk(n.Content[i+1], t.Elem(), key)
		}
	}
	// A wrong shape (a list where a mapping belongs…) is reported by the decoder.
}

// walkAny records lines and expands the environment in a part whose keys something else checks.
func (w *walker) walkAny(n *yaml.Node, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.ScalarNode:
		w.walk(n, nil, path)
	case yaml.SequenceNode:
		for i, item := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			w.keys[key] = item.Line
			w.walkAny(item, key)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := join(path, n.Content[i].Value)
			w.lines[n.Content[i].Line] = key
			w.keys[key] = n.Content[i].Line
			w.walkAny(n.Content[i+1], key)
		}
	}
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

func (w *walker) expand(n *yaml.Node, path string) {
	if !strings.Contains(n.Value, "$") {
		return
	}
	before := n.Value
	n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		m := envRef.FindStringSubmatch(ref)
		if v, ok := w.env(m[1]); ok && v != "" {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		w.problems = append(w.problems, Problem{Line: n.Line, Key: path, Message: fmt.Sprintf("environment variable %s is not set (or write ${%s:-default})", m[1], m[1])})
		return ""
	})
	if n.Style == 0 && n.Value != before {
		// An unquoted value is re-read after expansion, so that ${MAX_FILES} set to 20 decodes as a
		// number; a quoted one stays a string, as written.
		var probe yaml.Node
		if yaml.Unmarshal([]byte(n.Value), &probe) == nil && len(probe.Content) == 1 && probe.Content[0].Kind == yaml.ScalarNode {
			n.Tag = probe.Content[0].Tag
		} else {
			n.Tag = "!!str"
		}
	}
}

var (
	decodeLine     = regexp.MustCompile(`^line (\d+): (.*)$`)
	intoConfigType = regexp.MustCompile(` into config\.\w+`)
	intoOtherType  = regexp.MustCompile(` into \w+\.\w+`)
)

// describe rewrites a decoder message ("line 7: cannot unmarshal !!str `abc` into int") so it names
// the key, which is what a person fixing the file needs.
func (w *walker) describe(msg string) Problem {
	m := decodeLine.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Message: msg}
	}
	line, _ := strconv.Atoi(m[1])
	text := m[2]
	text = strings.Replace(text, "cannot unmarshal !!str", "expected a different type than the text", 1)
	text = strings.Replace(text, "cannot unmarshal !!seq", "expected a different type than a list", 1)
	text = strings.Replace(text, "cannot unmarshal !!map", "expected a different type than a mapping", 1)
	text = strings.Replace(text, "cannot unmarshal !!int", "expected a different type than the number", 1)
	text = strings.Replace(text, "cannot unmarshal !!bool", "expected a different type than the boolean", 1)
	text = strings.Replace(text, " into []string", " (want a list of strings)", 1)
	text = strings.Replace(text, " into int", " (want a whole number)", 1)
	text = strings.Replace(text, " into bool", " (want true or false)", 1)
	text = strings.Replace(text, " into string", " (want a string)", 1)
	text = intoConfigType.ReplaceAllString(text, " (want a mapping of keys)")
	text = intoOtherType.ReplaceAllString(text, " (want a mapping of keys)")
	if key, ok := w.lines[line]; ok {
		return Problem{Line: line, Key: key, Message: text}
	}
	return Problem{Line: line, Message: text}
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			for k, v := range yamlFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name != "" && name != "-" {
			out[name] = f
		}
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest names the closest known key, for the common case of a typo.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestDist := "", 3
	known := make([]string, 0, len(fields))
	for name := range fields {
		known = append(known, name)
		if d := editDistance(key, name); d < bestDist {
			best, bestDist = name, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	sort.Strings(known)
	return fmt.Sprintf(" (known keys here: %s)", strings.Join(known, ", "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
