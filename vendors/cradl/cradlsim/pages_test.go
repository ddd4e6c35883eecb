package cradlsim

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// TestReadPages checks the streamed reading against the whole-content one (Pages, then
// Recognise of each), with the bytes arriving one at a time: a form feed is never missed or
// counted twice whatever the reads.
func TestReadPages(t *testing.T) {
	for _, content := range []string{"x", "\f", "one page", "page one\fpage two", "\f\fmiddle\f", "a\fb\fc\f\f"} {
		rd, in, err := read("doc.pdf", iotest.OneByteReader(bytes.NewReader([]byte(content))), 1<<20)
		if err != nil || in.Over {
			t.Fatalf("%q: err %v, over %v", content, err, in.Over)
		}
		var want []simkit.Recognised
		for _, p := range Pages([]byte(content)) {
			want = append(want, recognise("doc.pdf", int64(len(p)), sha256.Sum256(p)))
		}
		if !reflect.DeepEqual(rd.Pages, want) {
			t.Fatalf("%q: %d pages %+v, want %d %+v", content, len(rd.Pages), rd.Pages, len(want), want)
		}
		whole := simkit.RecogniseContent("doc.pdf", []byte(content))
		whole.Text = ""
		if rd.Whole != whole {
			t.Fatalf("%q: whole %+v, want %+v", content, rd.Whole, whole)
		}
	}
}
