package intake

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

func TestSniff(t *testing.T) {
	cases := []struct {
		name     string
		head     string
		want     Kind
		detected string // when refused: must mention this
	}{
		{"pdf", "%PDF-1.7\n%âãÏÓ\n1 0 obj", PDF, ""},
		{"png", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", PNG, ""},
		{"jpeg", "\xff\xd8\xff\xe0\x00\x10JFIF", JPEG, ""},
		{"tiff little endian", "II*\x00\x08\x00\x00\x00", TIFF, ""},
		{"tiff big endian", "MM\x00*\x00\x00\x00\x08", TIFF, ""},
		{"gif", "GIF89a\x01\x00\x01\x00", GIF, ""},
		{"text", "Rechnung Nr. 4711\nBetrag: 12,50 €\n", Text, ""},
		{"text with BOM", "\xef\xbb\xbfhello", Text, ""},
		{"zip", "PK\x03\x04\x14\x00\x00\x00", Kind{}, "application/zip"},
		{"html", "<!DOCTYPE html><html><body>hi", Kind{}, "text/html"},
		{"xml", "<?xml version=\"1.0\"?><a/>", Kind{}, "text/xml"},
		{"exe", "MZ\x90\x00\x03\x00\x00\x00", Kind{}, "application/"},
		{"latin1 text", "Stra\xdfe 5\n", Kind{}, "not UTF-8"},
		{"utf16", "\xff\xfeh\x00i\x00", Kind{}, "UTF-16"},
		{"nul bytes", "abc\x00def", Kind{}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, detected, ok := Sniff([]byte(c.head), true)
			if ok != (c.want != Kind{}) || k != c.want {
				t.Fatalf("Sniff = %v, %q, %v; want %v", k, detected, ok, c.want)
			}
			if !ok && !strings.Contains(detected, c.detected) {
				t.Fatalf("detected %q does not mention %q", detected, c.detected)
			}
		})
	}
}

func TestSniffTextCutMidRune(t *testing.T) {
	head := []byte(strings.Repeat("a", SniffLen-1) + "€")[:SniffLen] // the euro sign cut after its first byte
	if _, _, ok := Sniff(head, false); !ok {
		t.Fatal("text cut by the sniff window was refused")
	}
	if _, _, ok := Sniff(head, true); ok {
		t.Fatal("a document ending in half a rune was accepted as text")
	}
}

func TestLimitReader(t *testing.T) {
	for _, c := range []struct {
		size, limit int64
		tooLarge    bool
	}{{10, 10, false}, {11, 10, true}, {0, 10, false}, {1 << 20, 1<<20 - 1, true}} {
		lr := &limitReader{r: bytes.NewReader(make([]byte, c.size)), limit: c.limit}
		n, err := io.Copy(io.Discard, lr)
		var tl *TooLargeError
		if got := errors.As(err, &tl); got != c.tooLarge {
			t.Errorf("size %d limit %d: err %v", c.size, c.limit, err)
		}
		if n > c.limit {
			t.Errorf("size %d limit %d: %d bytes came through", c.size, c.limit, n)
		}
	}
}

func TestTextReader(t *testing.T) {
	ok := strings.Repeat("Grüße, 世界! 🎉\n", 1000)
	cases := map[string]bool{
		ok:                        true,
		ok + "\x00":               false,
		ok + "\xff":               false,
		ok + "\xe2\x82":           false, // cut-off rune at EOF
		"x\x7f":                   false,
		strings.Repeat("é", 5000): true,
	}
	for in, valid := range cases {
		for _, wrap := range []func(io.Reader) io.Reader{iotest.OneByteReader, iotest.HalfReader, func(r io.Reader) io.Reader { return r }} {
			_, err := io.Copy(io.Discard, &textReader{r: wrap(strings.NewReader(in))})
			if (err == nil) != valid {
				t.Errorf("input of %d bytes: err %v, want valid=%v", len(in), err, valid)
			}
		}
	}
}

func FuzzTextReader(f *testing.F) {
	f.Add([]byte("hello wörld"), uint8(1))
	f.Add([]byte("\xe2\x82\xac\xe2\x82"), uint8(2))
	f.Add([]byte("a\x00b"), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		want := utf8.Valid(data)
		if want {
			for _, r := range string(data) {
				if isBinaryRune(r) {
					want = false
				}
			}
		}
		n := int(chunk%7) + 1
		_, err := io.Copy(io.Discard, &textReader{r: &chunkReader{data: data, n: n}})
		if (err == nil) != want {
			t.Fatalf("textReader says valid=%v, want %v (chunks of %d): %q", err == nil, want, n, data)
		}
	})
}

type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[k:]
	return k, nil
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte("%PDF-1.4"))
	f.Add([]byte("plain"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, head []byte) {
		k, detected, ok := Sniff(head, true)
		if ok && k.ContentType == "" || !ok && detected == "" {
			t.Fatalf("Sniff(%q) = %v %q %v", head, k, detected, ok)
		}
	})
}

func TestSanitizeFilename(t *testing.T) {
	id := "0192aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"
	cases := []struct{ in, want string }{
		{"invoice.pdf", "invoice.pdf"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\me\scan 1.png`, "scan 1.png"},
		{"a\x00b.pdf", "ab.pdf"},
		{"evil\u202efdp.exe", "evilfdp.exe"},
		{"line\nbreak.txt", "linebreak.txt"},
		{"..", "document-" + id + ".pdf"},
		{"", "document-" + id + ".pdf"},
		{"/", "document-" + id + ".pdf"},
		{"\xff\xfe.pdf", "pdf"},
		{" spaced .pdf ", "spaced .pdf"},
	}
	for _, c := range cases {
		if got := SanitizeFilename(c.in, id, ".pdf"); got != c.want {
			t.Errorf("SanitizeFilename(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := SanitizeFilename(strings.Repeat("ä", 1024)+".pdf", id, ".pdf")
	if len(long) > maxFilenameBytes || !strings.HasSuffix(long, ".pdf") || !utf8.ValidString(long) {
		t.Errorf("2 KB name became %d bytes %q", len(long), long[len(long)-10:])
	}
}

func FuzzSanitizeFilename(f *testing.F) {
	f.Add("../../etc/passwd")
	f.Add(strings.Repeat("x", 3000) + ".tiff")
	f.Add("\u202e\x00")
	f.Fuzz(func(t *testing.T, in string) {
		got := SanitizeFilename(in, "id", ".pdf")
		if got == "" || len(got) > maxFilenameBytes || !utf8.ValidString(got) ||
			strings.ContainsAny(got, "/\\\x00\n\r") || got == "." || got == ".." {
			t.Fatalf("SanitizeFilename(%q) = %q", in, got)
		}
	})
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{12: "12 bytes", 1024: "1 KiB", 1536: "1.5 KiB", 64 << 20: "64 MiB", 3 << 30: "3 GiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
