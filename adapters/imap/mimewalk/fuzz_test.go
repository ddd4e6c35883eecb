package mimewalk_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
)

// countingReader counts what Walk pulls from the input.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func FuzzWalk(f *testing.F) {
	files, err := filepath.Glob("testdata/*.eml")
	if err != nil || len(files) == 0 {
		f.Fatalf("no corpus: %v", err)
	}
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, true)
	}
	// Small limits keep each run fast and make them reachable.
	lim := mimewalk.Limits{MaxDepth: 8, MaxParts: 64, MaxHeaderBytes: 4 << 10, MaxMessageBytes: 256 << 10, MaxPartBytes: 64 << 10}
	f.Fuzz(func(t *testing.T, raw []byte, includeBody bool) {
		in := &countingReader{r: bytes.NewReader(raw)}
		index := 0
		_, res, err := mimewalk.Walk(in, lim, mimewalk.Options{IncludeBody: includeBody}, func(p mimewalk.Part) error {
			index++
			if p.Index != index {
				t.Fatalf("Index %d, want %d", p.Index, index)
			}
			// A path has one element per level of nesting, plus one for a TNEF file.
			if len(p.Path) > lim.MaxDepth+1 {
				t.Fatalf("path %v deeper than the limits allow", p.Path)
			}
			if !utf8.ValidString(p.Filename) || len(p.Filename) > 255 {
				t.Fatalf("filename %q", p.Filename)
			}
			n, err := io.Copy(io.Discard, p.Body)
			if n > lim.MaxPartBytes {
				t.Fatalf("Body gave %d bytes, limit %d", n, lim.MaxPartBytes)
			}
			var le *mimewalk.LimitError
			if err != nil && !errors.As(err, &le) && !errors.Is(err, mimewalk.ErrBrokenPart) {
				t.Fatalf("Body.Read: unexpected error %v", err)
			}
			return err
		})
		var le *mimewalk.LimitError
		if err != nil && !errors.As(err, &le) {
			t.Fatalf("Walk: %v (only limits are fatal with a healthy reader)", err)
		}
		if res.Parts != index {
			t.Fatalf("Result.Parts %d, fn called %d times", res.Parts, index)
		}
		if res.Parts > lim.MaxParts {
			t.Fatalf("%d parts, limit %d", res.Parts, lim.MaxParts)
		}
		if in.n > lim.MaxMessageBytes+1 {
			t.Fatalf("read %d bytes of input, limit %d", in.n, lim.MaxMessageBytes)
		}
	})
}
