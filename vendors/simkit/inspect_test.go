package simkit_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

// markers are the strings the tests look for: the simulators' own, one that starts like itself
// ("aab" in "aaab"), a multi-byte one, and a single byte.
var markers = []string{"/Encrypt", "NETSCAPE2.0", "aab", "€", "\f"}

// want is what an Inspection of b should say, from the whole-content functions.
func want(b []byte, limit int64, markers []string) simkit.Inspection {
	over := limit >= 0 && int64(len(b)) > limit
	if over {
		b = b[:limit]
	}
	return simkit.Inspection{Size: int64(len(b)), Over: over, SHA256: sha256.Sum256(b),
		Head: b[:min(len(b), simkit.DefaultHeadSize)], Text: simkit.IsText(b)}
}

// check compares got with the whole-content answer for b.
func check(t *testing.T, how string, got simkit.Inspection, b []byte, limit int64, markers []string) {
	t.Helper()
	w := want(b, limit, markers)
	if got.Size != w.Size || got.Over != w.Over || got.SHA256 != w.SHA256 || !bytes.Equal(got.Head, w.Head) || got.Text != w.Text {
		t.Fatalf("%s: got size %d over %v sha %x text %v head %q; want size %d over %v sha %x text %v head %q",
			how, got.Size, got.Over, got.SHA256[:4], got.Text, got.Head, w.Size, w.Over, w.SHA256[:4], w.Text, w.Head)
	}
	inspected := b[:w.Size]
	for _, m := range markers {
		if g, w := got.Has(m), bytes.Contains(inspected, []byte(m)); g != w {
			t.Fatalf("%s: Has(%q) = %v, want %v", how, m, g, w)
		}
	}
	if got.Hex() != fmt.Sprintf("%x", w.SHA256) {
		t.Fatalf("%s: Hex() = %s", how, got.Hex())
	}
}

// noWriterTo hides a reader's WriteTo, so that Inspect reads it in chunks like a request body.
type noWriterTo struct{ io.Reader }

func TestInspect(t *testing.T) {
	long := strings.Repeat("x", simkit.DefaultHeadSize+10)
	cases := []struct {
		name  string
		in    string
		limit int64
	}{
		{"empty", "", 10},
		{"empty, limit 0", "", 0},
		{"empty, no limit", "", -1},
		{"one byte over a zero limit", "a", 0},
		{"PDF with /Encrypt in the middle", "%PDF-1.7\n1 0 obj << /Encrypt 5 0 R >>\n%%EOF", -1},
		{"marker at the very start and end", "/Encrypt and NETSCAPE2.0", -1},
		{"marker that starts like itself", "aaab", -1},
		{"almost a marker", "/Encryp /Encrypu NETSCAPE2.", -1},
		{"marker cut by the limit", "12345/Encrypt", 12},
		{"marker ending at the limit", "12345/Encrypt", 13},
		{"limit - 1", "abcdefghi", 10},
		{"limit", "abcdefghij", 10},
		{"limit + 1", "abcdefghijk", 10},
		{"UTF-8 text of every rune length", "a é € 𝄞 \t\r\n\f z", -1},
		{"euro marker", "price 5€", -1},
		{"control character", "abc\x01def", -1},
		{"DEL", "abc\x7f", -1},
		{"NUL at the end", "abc\x00", -1},
		{"invalid UTF-8", "abc\xffdef", -1},
		{"surrogate half", "a\xed\xa0\x80b", -1},
		{"overlong encoding", "a\xc0\xafb", -1},
		{"rune cut at the end", "abc\xe2\x82", -1},
		{"rune cut by the limit", "ab€", 3},
		{"rune whole at the limit", "ab€", 5},
		{"lead byte then ASCII", "\xe2a\x82\xac", -1},
		{"U+FFFD itself is text", "a\uFFFDb", -1},
		{"longer than the head", long + "/Encrypt", -1},
		{"GIF with NETSCAPE2.0", "GIF89a\x01\x00\x01\x00!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00;", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			got, err := simkit.Inspect(bytes.NewReader(b), tc.limit, markers...)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "whole", got, b, tc.limit, markers)

			// Every split into two writes: runes and markers cut at every boundary.
			for i := 0; i <= len(b); i++ {
				in := simkit.NewInspector(simkit.InspectConfig{Limit: tc.limit, Markers: markers})
				for _, p := range [][]byte{b[:i], b[i:]} {
					if n, err := in.Write(p); n != len(p) || err != nil {
						t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
					}
				}
				check(t, fmt.Sprintf("split at %d", i), in.Inspection(), b, tc.limit, markers)
			}

			readers := map[string]io.Reader{
				"one byte at a time":  iotest.OneByteReader(bytes.NewReader(b)),
				"half reads":          iotest.HalfReader(bytes.NewReader(b)),
				"EOF with the data":   iotest.DataErrReader(bytes.NewReader(b)),
				"chunked, no WriteTo": noWriterTo{bytes.NewReader(b)},
			}
			for how, r := range readers {
				got, err := simkit.Inspect(r, tc.limit, markers...)
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				check(t, how, got, b, tc.limit, markers)
			}
		})
	}
}

// endless is a reader that never ends, counting what was taken from it.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.read += int64(len(p))
	return len(p), nil
}

func TestInspectStopsOneBytePastTheLimit(t *testing.T) {
	for _, limit := range []int64{0, 1, 100, 1 << 20} {
		src := &endless{}
		got, err := simkit.Inspect(src, limit)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Over || got.Size != limit || src.read != limit+1 {
			t.Fatalf("limit %d: Over %v, Size %d, read %d; want Over, Size %d, read %d", limit, got.Over, got.Size, src.read, limit, limit+1)
		}
	}
}

func TestInspectReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("%PDF-1.4 partial"), iotest.ErrReader(boom))
	got, err := simkit.Inspect(r, 1<<20, "/Encrypt")
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if got.Size != int64(len("%PDF-1.4 partial")) || !got.HasPrefix("%PDF-") {
		t.Fatalf("what was read before the error: size %d head %q", got.Size, got.Head)
	}
}

func TestInspectAlso(t *testing.T) {
	var also bytes.Buffer
	got, err := simkit.InspectWith(iotest.OneByteReader(strings.NewReader("0123456789abc")),
		simkit.InspectConfig{Limit: 10, HeadSize: 4, Also: &also})
	if err != nil {
		t.Fatal(err)
	}
	if also.String() != "0123456789" {
		t.Fatalf("Also got %q, want the 10 bytes within the limit", also.String())
	}
	if string(got.Head) != "0123" || !got.Over {
		t.Fatalf("head %q over %v; want \"0123\", over", got.Head, got.Over)
	}

	boom := errors.New("disk full")
	_, err = simkit.InspectWith(strings.NewReader("abc"), simkit.InspectConfig{Limit: -1, Also: failing{boom}})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want Also's error", err)
	}
}

type failing struct{ err error }

func (f failing) Write([]byte) (int, error) { return 0, f.err }

func TestInspectionHasUnaskedMarkerPanics(t *testing.T) {
	got, err := simkit.Inspect(strings.NewReader("x"), 10, "/Encrypt")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Has of a marker not looked for did not panic")
		}
	}()
	got.Has("NETSCAPE2.0")
}

func TestIsText(t *testing.T) {
	for in, want := range map[string]bool{
		"": true, "plain\ttext\r\n\f": true, "€𝄞": true, "a\x00": false, "\x1b[0m": false, "\x7f": false,
		"\xff": false, "\xe2\x82": false, "\uFFFD": true,
	} {
		if got := simkit.IsText([]byte(in)); got != want {
			t.Errorf("IsText(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestRecognise(t *testing.T) {
	content := []byte("%PDF-1.4 invoice")
	in, err := simkit.Inspect(bytes.NewReader(content), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, want := simkit.Recognise("a.pdf", in.Size, in.SHA256), simkit.RecogniseContent("a.pdf", content)
	if got != want {
		t.Fatalf("Recognise from an Inspection = %+v, from the content = %+v", got, want)
	}
	if other := simkit.RecogniseContent("a.pdf", []byte("%PDF-1.4 other")); other == want {
		t.Fatal("different content recognised the same")
	}
	if !strings.Contains(want.Text, "a.pdf (16 bytes)") {
		t.Fatalf("text %q does not name the file and its size", want.Text)
	}
}

func FuzzInspect(f *testing.F) {
	f.Add([]byte("%PDF-1.4 /Encrypt"), uint16(5), int64(-1))
	f.Add([]byte("a€b\xe2"), uint16(2), int64(3))
	f.Add([]byte("NETSCAPE2.0"), uint16(4), int64(11))
	f.Fuzz(func(t *testing.T, b []byte, split uint16, limit int64) {
		if limit < -1 {
			limit = -1
		}
		// Boundaries matter, not length: long inputs only slow the one-byte reads down.
		b = b[:min(len(b), 4<<10)]
		cut := int(split) % (len(b) + 1)
		in := simkit.NewInspector(simkit.InspectConfig{Limit: limit, Markers: markers})
		_, _ = in.Write(b[:cut])
		_, _ = in.Write(b[cut:])
		check(t, "two writes", in.Inspection(), b, limit, markers)
		got, err := simkit.Inspect(iotest.OneByteReader(bytes.NewReader(b)), limit, markers...)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "one byte at a time", got, b, limit, markers)
	})
}

// TestInspectMemoryIsBounded proves the point of Inspect: what it allocates does not grow with
// the document (a read buffer, the head, the hash), where io.ReadAll's grows with it.
func TestInspectMemoryIsBounded(t *testing.T) {
	allocated := func(size int) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := simkit.Inspect(noWriterTo{io.LimitReader(&endless{}, int64(size))}, 1<<30, markers...); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, big := allocated(100<<10), allocated(8<<20)
	if big > 128<<10 || big > small+16<<10 {
		t.Fatalf("Inspect allocated %d bytes for 100 KiB and %d for 8 MiB: it should not grow with the document", small, big)
	}
}

// BenchmarkInspect shows the memory per document: the same few KiB for 100 KiB as for 4 MiB.
// BenchmarkReadAll is what the simulators did before, for comparison.
func BenchmarkInspect(b *testing.B) {
	for _, size := range []int{100 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				// 4 KiB reads, as from a multipart part.
				r := bufioSized{io.LimitReader(&endless{}, int64(size)), 4 << 10}
				if _, err := simkit.Inspect(r, 1<<30, "/Encrypt", "NETSCAPE2.0"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadAll(b *testing.B) {
	for _, size := range []int{100 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				r := bufioSized{io.LimitReader(&endless{}, int64(size)), 4 << 10}
				content, err := io.ReadAll(io.LimitReader(r, 1<<30))
				if err != nil {
					b.Fatal(err)
				}
				sha256.Sum256(content)
			}
		})
	}
}

// bufioSized returns at most n bytes per Read.
type bufioSized struct {
	r io.Reader
	n int
}

func (s bufioSized) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.n)]) }
