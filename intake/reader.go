package intake

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// TooLargeError says a document went past its size limit. It is detected while streaming: nothing
// larger than the limit is ever read.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the document is larger than the limit of %s", HumanBytes(e.Limit))
}

// UnsupportedTypeError says a document is of a type ingest does not take.
type UnsupportedTypeError struct{ Detected string }

func (e *UnsupportedTypeError) Error() string {
	return fmt.Sprintf("the content is %s; accepted are %s", e.Detected, Accepted)
}

// limitReader fails with *TooLargeError as soon as more than limit bytes come through.
type limitReader struct {
	r     io.Reader
	limit int64
	n     int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if room := l.limit - l.n + 1; int64(len(p)) > room {
		p = p[:room] // read one byte past the limit at most, to see whether there is one
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.limit {
		return 0, &TooLargeError{Limit: l.limit}
	}
	return n, err
}

// textReader checks, as the bytes go by, that a document sniffed as text stays UTF-8 text to its
// end: a text header on a binary file is caught however late the binary part starts.
type textReader struct {
	r      io.Reader
	carry  [utf8.UTFMax]byte // an incomplete rune at the end of the last Read
	ncarry int
	off    int64
}

func (t *textReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	data := p[:n]
	i := 0
	if t.ncarry > 0 {
		// Complete the rune begun in the previous Read.
		var buf [2 * utf8.UTFMax]byte
		k := copy(buf[:], t.carry[:t.ncarry])
		k += copy(buf[k:], data[:min(len(data), utf8.UTFMax)])
		if !utf8.FullRune(buf[:k]) && err == nil {
			t.ncarry = copy(t.carry[:], buf[:k])
			return n, nil
		}
		r, size := utf8.DecodeRune(buf[:k])
		if (r == utf8.RuneError && size <= 1) || isBinaryRune(r) {
			return 0, t.fail()
		}
		i = size - t.ncarry
		t.ncarry = 0
	}
	for i < len(data) {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			if !utf8.FullRune(data[i:]) && err == nil {
				t.ncarry = copy(t.carry[:], data[i:])
				break
			}
			t.off += int64(i)
			return 0, t.fail()
		}
		if isBinaryRune(r) {
			t.off += int64(i)
			return 0, t.fail()
		}
		i += size
	}
	if err == io.EOF && t.ncarry > 0 {
		return 0, t.fail()
	}
	t.off += int64(n)
	return n, err
}

func (t *textReader) fail() error {
	return &UnsupportedTypeError{Detected: fmt.Sprintf("text that turns into binary data (not UTF-8) near byte %d", t.off)}
}

// HumanBytes writes a size the way people say it: 64 MiB, 1.5 KiB, 12 bytes.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	suffix := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}[exp]
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %s", int64(v), suffix)
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
