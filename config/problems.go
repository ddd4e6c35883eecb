package config

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration: the key it is about, its line in the file when
// known, and what is wrong, in words.
type Problem struct {
	Line    int
	Key     string // dotted: "http.listen", "sources.imap[0].tls", "vendors.<name>.client_id"
	Message string
}

func (p Problem) String() string {
	s := p.Message
	if p.Key != "" {
		s = p.Key + ": " + s
	}
	if p.Line > 0 {
		s = fmt.Sprintf("line %d: %s", p.Line, s)
	}
	return s
}

// Report is how a check says what is wrong: key is the dotted key the problem is about.
type Report func(key, format string, args ...any)

// Collect returns a Report that appends to list.
func Collect(list *[]Problem) Report {
	return func(key, format string, args ...any) {
		*list = append(*list, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
}

// Under returns a Report for a part of the configuration: keys are relative to prefix.
func Under(prefix string, r Report) Report {
	return func(key, format string, args ...any) {
		if key == "" {
			r(prefix, format, args...)
			return
		}
		r(prefix+"."+key, format, args...)
	}
}

// Problems is every problem found in one configuration, in file order where a line is known.
type Problems struct {
	Source string // file name, or "embedded default"
	List   []string
}

// NewProblems sorts list by line (problems without one last), then key, and words it; nil when
// list is empty. The order is the same whatever order the checks ran in.
func NewProblems(source string, list []Problem) *Problems {
	if len(list) == 0 {
		return nil
	}
	sorted := append([]Problem(nil), list...)
	sort.SliceStable(sorted, func(i, j int) bool {
		li, lj := sorted[i].Line, sorted[j].Line
		if li == 0 {
			li = 1 << 30
		}
		if lj == 0 {
			lj = 1 << 30
		}
		if li != lj {
			return li < lj
		}
		return sorted[i].Key < sorted[j].Key
	})
	p := &Problems{Source: source}
	seen := map[string]bool{}
	for _, pr := range sorted {
		if s := pr.String(); !seen[s] {
			seen[s] = true
			p.List = append(p.List, s)
		}
	}
	return p
}

func (p *Problems) Error() string {
	if len(p.List) == 1 {
		return fmt.Sprintf("config %s: %s", p.Source, p.List[0])
	}
	return fmt.Sprintf("config %s has %d problems:\n  %s", p.Source, len(p.List), strings.Join(p.List, "\n  "))
}

// lines maps dotted keys to the lines they were written on.
type lines map[string]int

// line is the line of key, or of the nearest enclosing key written in the file (a problem
// about a key left at its default points at its section).
func (l lines) line(key string) int {
	for key != "" {
		if n, ok := l[key]; ok {
			return n
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// locate fills in the lines of problems that have none.
func (l lines) locate(list []Problem) {
	for i := range list {
		if list[i].Line == 0 {
			list[i].Line = l.line(list[i].Key)
		}
	}
}
