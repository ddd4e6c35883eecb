package laigosim

import (
	"bytes"
	"io"
	"regexp"
	"testing"
	"testing/iotest"
)

// pdfPage is the rule pdfPages follows, as a regular expression over the whole file.
var pdfPage = regexp.MustCompile(`/Type\s*/Page\b`)

// pagesOf counts with pdfPages, writing b in two parts cut at cut and then one byte at a time.
func pagesOf(t *testing.T, b []byte, cut int) int {
	t.Helper()
	var two, one pdfPages
	_, _ = two.Write(b[:cut])
	_, _ = two.Write(b[cut:])
	if _, err := io.Copy(&one, iotest.OneByteReader(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if two.Count() != one.Count() {
		t.Fatalf("%q: %d pages written in two, %d written byte by byte", b, two.Count(), one.Count())
	}
	return one.Count()
}

func TestPDFPages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{"/Type /Page", 1},
		{"/Type/Page", 1},
		{"/Type \r\n\t\f /Page>>", 1},
		{"/Type /Pages", 0},
		{"/Type /Page_", 0},
		{"/Type /Page1", 0},
		{"/Type /Page/Type /Page", 2},
		{"/Type /Type /Page", 1},
		{"/Type //Type /Page", 1},
		{"//Type /Page", 1},
		{"/Type /Pa /Type /Page", 1},
		{"/Type\v/Page", 0}, // \s has no vertical tab
		{"<< /Type /Pages /Kids [3 0 R 4 0 R] >> 3 0 obj << /Type /Page >> 4 0 obj << /Type /Page >>", 2},
		{"/Type /Pageé", 1}, // \b holds before a non-ASCII byte
		{"/type /page", 0},
	} {
		if got := pdfPage.FindAllIndex([]byte(tc.in), -1); len(got) != tc.want {
			t.Fatalf("test case %q: the expression finds %d, the table says %d", tc.in, len(got), tc.want)
		}
		for cut := 0; cut <= len(tc.in); cut++ {
			if got := pagesOf(t, []byte(tc.in), cut); got != tc.want {
				t.Fatalf("%q cut at %d: %d pages, want %d", tc.in, cut, got, tc.want)
			}
		}
	}
}

func FuzzPDFPages(f *testing.F) {
	f.Add([]byte("/Type /Page /Type/Pages /Type /Page"), uint16(8))
	f.Add([]byte("/Type /Type\n/Page"), uint16(3))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		b = b[:min(len(b), 4<<10)]
		want := len(pdfPage.FindAllIndex(b, -1))
		if got := pagesOf(t, b, int(cut)%(len(b)+1)); got != want {
			t.Fatalf("%q: %d pages, the expression finds %d", b, got, want)
		}
	})
}
