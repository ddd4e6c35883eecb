package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/events"
)

// view is what every page template gets.
type view struct {
	Title string
	Nav   string // the menu entry to highlight
	// Live says what the page's script refreshes on events: "overview", "documents",
	// "document:<id>", "sources", "vendors"; "" for none.
	Live     string
	CSRF     string
	SignedIn bool
	Flash    string
	Error    string
	Data     any
}

var pageNames = []string{"login", "overview", "documents", "document", "sources", "vendors", "error"}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console page %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a page. It is rendered to a buffer first, so that a template error is a clean
// 500 rather than half a page.
func (c *Console) render(ec echo.Context, status int, name string, v *view) error {
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, v); err != nil {
		c.log.Error("console page not rendered", "page", name, "err", err)
		return problem(http.StatusInternalServerError, "the page could not be rendered; the log has the details")
	}
	return ec.HTMLBlob(status, buf.Bytes())
}

// pageFor fills the parts of a view every signed-in page has.
func pageFor(s *session, title, nav, live string, data any) *view {
	return &view{Title: title, Nav: nav, Live: live, CSRF: s.CSRF, SignedIn: true, Data: data}
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"bytes": func(n int64) string {
		switch {
		case n >= 1<<20:
			return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
		case n >= 1<<10:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return strconv.FormatInt(n, 10) + " B"
	},
	"dur": func(d time.Duration) string {
		if d == 0 {
			return "—"
		}
		return d.String()
	},
	"kind": func(typ string) string { return string(events.Event{Type: typ}.Kind()) },
	// sortedKeys lists a map's keys in order, so pages come out the same every time.
	"sortedKeys": func(m map[string]int64) []string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return keys
	},
	"excerpt": excerpt,
	"deref":   func(f *float64) float64 { return *f },
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"docURL":  func(id string) string { return "/ui/documents/" + url.PathEscape(id) },
}
