package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problems is every problem found in one configuration, in file order where a line is known.
type Problems struct {
	Source string // file name, or "embedded default"
	List   []string
}

func (p *Problems) Error() string {
	if len(p.List) == 1 {
		return fmt.Sprintf("config %s: %s", p.Source, p.List[0])
	}
	return fmt.Sprintf("config %s has %d problems:\n  %s", p.Source, len(p.List), strings.Join(p.List, "\n  "))
}

// LookupEnv finds environment variables; os.LookupEnv in production, a map in tests.
type LookupEnv func(name string) (string, bool)

// Load reads and validates the file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path, os.LookupEnv)
}

// Parse reads a configuration from YAML, expanding ${VAR} and ${VAR:-default} in values. Every key
// not present keeps its Default. The error, if any, is a *Problems listing everything wrong.
func Parse(data []byte, source string, env LookupEnv) (Config, error) {
	cfg := Default()
	probs := &Problems{Source: source}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		probs.List = append(probs.List, strings.TrimPrefix(err.Error(), "yaml: "))
		return cfg, probs
	}
	if len(doc.Content) == 0 { // an empty file means "all defaults"
		return cfg, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		probs.List = append(probs.List, fmt.Sprintf("line %d: the top level must be a mapping of keys (data_dir:, nats:, http:, …)", root.Line))
		return cfg, probs
	}

	w := walker{env: env, lines: map[int]string{}}
	w.walk(root, reflect.TypeOf(cfg), "")
	probs.List = append(probs.List, w.problems...)

	if err := root.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			probs.List = append(probs.List, err.Error())
		} else {
			for _, e := range te.Errors {
				probs.List = append(probs.List, w.describe(e))
			}
		}
	}
	if len(probs.List) > 0 {
		sortByLine(probs.List)
		return cfg, probs
	}
	for _, err := range cfg.Validate() {
		probs.List = append(probs.List, err.Error())
	}
	if len(probs.List) > 0 {
		return cfg, probs
	}
	return cfg, nil
}

// walker checks keys against the Config struct and expands environment variables in place, so that
// line numbers in later decode errors still point into the file the user wrote.
type walker struct {
	env      LookupEnv
	problems []string
	lines    map[int]string // line → dotted key, to name keys in decoder errors
}

var yamlUnmarshaler = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode {
		if path != "" {
			w.lines[n.Line] = path
		}
		w.expand(n, path)
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(yamlUnmarshaler) {
		return // Duration, ByteSize: they check their own shape
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			w.lines[k.Line] = key
			f, ok := fields[k.Value]
			if !ok {
				w.problems = append(w.problems, fmt.Sprintf("line %d: unknown key %q%s", k.Line, key, suggest(k.Value, fields)))
				continue
			}
			w.walk(v, f.Type, key)
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	}
	// A wrong shape (a list where a mapping belongs…) is reported by the decoder.
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
		w.problems = append(w.problems, fmt.Sprintf("line %d: %s: environment variable %s is not set (or write ${%s:-default})", n.Line, path, m[1], m[1]))
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
)

// describe rewrites a decoder message ("line 7: cannot unmarshal !!str `abc` into int") so it names
// the key, which is what a person fixing the file needs.
func (w *walker) describe(msg string) string {
	m := decodeLine.FindStringSubmatch(msg)
	if m == nil {
		return msg
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
	if key, ok := w.lines[line]; ok {
		return fmt.Sprintf("line %d: %s: %s", line, key, text)
	}
	return fmt.Sprintf("line %d: %s", line, text)
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

func sortByLine(list []string) {
	lineOf := func(s string) int {
		if m := decodeLine.FindStringSubmatch(s); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return 1 << 30
	}
	sort.SliceStable(list, func(i, j int) bool { return lineOf(list[i]) < lineOf(list[j]) })
}
