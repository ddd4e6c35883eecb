package mimewalk_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
)

// patternReader yields n bytes of a fixed pattern without ever holding them.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	for i := range p {
		o := r.off + int64(i)
		p[i] = byte(o ^ o>>8 ^ o>>16)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// b64Lines base64-encodes src into 76-character CRLF lines as it is read.
type b64Lines struct {
	src     io.Reader
	pending []byte
	raw     [57 * 64]byte
}

func (r *b64Lines) Read(p []byte) (int, error) {
	if len(r.pending) == 0 {
		n, err := io.ReadFull(r.src, r.raw[:])
		if n == 0 {
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			return 0, err
		}
		out := r.pending[:0]
		for i := 0; i < n; i += 57 {
			out = base64.StdEncoding.AppendEncode(out, r.raw[i:min(i+57, n)])
			out = append(out, '\r', '\n')
		}
		r.pending = out
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// bigMail streams a mail with one base64 attachment of size decoded bytes, then a small PDF.
func bigMail(size int64) io.Reader {
	head := stdHeader + "Subject: big\r\nContent-Type: multipart/mixed; boundary=big\r\n\r\n" +
		"--big\r\nContent-Type: application/octet-stream; name=big.bin\r\n" +
		"Content-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	tail := "--big\r\n" + pdfAttachment("small.pdf") + "--big--\r\n"
	return io.MultiReader(strings.NewReader(head), &b64Lines{src: &patternReader{n: size}}, strings.NewReader(tail))
}

func TestMaxMessageBytes(t *testing.T) {
	_, _, _, err := collect(t, bigMail(3<<20), mimewalk.Limits{MaxMessageBytes: 1 << 20}, mimewalk.Options{})
	checkLimit(t, err, mimewalk.LimitMessageBytes)

	// Exactly at the limit passes; one byte less does not.
	raw, _ := os.ReadFile("testdata/single-part.eml")
	_, _, parts, err := collect(t, bytes.NewReader(raw), mimewalk.Limits{MaxMessageBytes: int64(len(raw))}, mimewalk.Options{})
	if err != nil || len(parts) != 1 {
		t.Fatalf("at the limit: err %v, %d parts", err, len(parts))
	}
	_, _, _, err = collect(t, bytes.NewReader(raw), mimewalk.Limits{MaxMessageBytes: int64(len(raw)) - 1}, mimewalk.Options{})
	checkLimit(t, err, mimewalk.LimitMessageBytes)
}

func TestMaxPartBytes(t *testing.T) {
	const limit = 1 << 20
	lim := mimewalk.Limits{MaxPartBytes: limit}

	var read int64
	_, _, err := mimewalk.Walk(bigMail(3<<20), lim, mimewalk.Options{}, func(p mimewalk.Part) error {
		n, err := io.Copy(io.Discard, p.Body)
		read += n
		var le *mimewalk.LimitError
		if !errors.As(err, &le) || le.What != mimewalk.LimitPartBytes {
			t.Errorf("Body.Read: %v, want a LimitError", err)
		}
		return nil // swallowed: Walk must still return it
	})
	checkLimit(t, err, mimewalk.LimitPartBytes)
	if read != limit {
		t.Errorf("fn read %d bytes, want exactly the limit %d", read, limit)
	}

	// A part of exactly the limit is fine.
	_, _, parts, err := collect(t, bigMail(limit), lim, mimewalk.Options{})
	if err != nil || len(parts) != 2 || len(parts[0].Data) != limit {
		t.Fatalf("at the limit: err %v, %d parts", err, len(parts))
	}

	// A body fn does not read is skipped undecoded: MaxPartBytes is about what fn gets.
	var names []string
	_, _, err = mimewalk.Walk(bigMail(3<<20), lim, mimewalk.Options{}, func(p mimewalk.Part) error {
		names = append(names, p.Filename)
		return nil
	})
	if err != nil || len(names) != 2 {
		t.Fatalf("unread: err %v, parts %q", err, names)
	}
}

func TestMaxPartBytesTNEF(t *testing.T) {
	raw, _ := os.ReadFile("testdata/winmail.eml")
	_, _, _, err := collect(t, bytes.NewReader(raw), mimewalk.Limits{MaxPartBytes: 100}, mimewalk.Options{})
	checkLimit(t, err, mimewalk.LimitPartBytes)
}

func TestMaxHeaderBytes(t *testing.T) {
	junk := func(n int) string {
		return strings.Repeat("X-Junk: "+strings.Repeat("j", 70)+"\r\n", n/80)
	}
	tests := []struct {
		name  string
		mail  string
		limit string
	}{
		{"top-level header", stdHeader + junk(100<<10) + "Subject: x\r\n\r\nbody\r\n", mimewalk.LimitHeaderBytes},
		{"top-level header within the limit", stdHeader + junk(60<<10) + "Content-Type: application/pdf\r\n\r\n%PDF\r\n", ""},
		{"one long header line", stdHeader + "X-Long: " + strings.Repeat("a", 200<<10) + "\r\n\r\n", mimewalk.LimitHeaderBytes},
		{"part header", string(mixed("hdr", "h", crlf("Content-Type: application/pdf")+junk(100<<10)+"\r\n%PDF\r\n")), mimewalk.LimitHeaderBytes},
		{"part header within the limit", string(mixed("hdr", "h", crlf("Content-Type: application/pdf")+junk(60<<10)+"\r\n%PDF\r\n")), ""},
		{"nested message header", string(mixed("hdr", "h", crlf("Content-Type: message/rfc822", "", "From: x@example.com")+junk(100<<10)+"\r\nbody\r\n")), mimewalk.LimitHeaderBytes},
		{"a huge preamble counts as header bytes", stdHeader + "Content-Type: multipart/mixed; boundary=p\r\n\r\n" +
			strings.Repeat("preamble line\r\n", 10000) + "--p\r\n\r\nx\r\n--p--\r\n", mimewalk.LimitHeaderBytes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, parts, err := collect(t, strings.NewReader(tt.mail), mimewalk.Limits{}, mimewalk.Options{})
			checkLimit(t, err, tt.limit)
			if tt.limit == "" && len(parts) != 1 {
				t.Fatalf("%d parts", len(parts))
			}
		})
	}
}

// Forwards inside forwards, 30 deep: message/rfc822 nesting counts like multipart nesting.
func TestNestedMessageBomb(t *testing.T) {
	m := crlf("Content-Type: application/pdf", "", "%PDF-1.4")
	for range 30 {
		m = crlf("From: x@example.com", "Content-Type: message/rfc822", "") + m
	}
	_, _, _, err := collect(t, strings.NewReader(m), mimewalk.Limits{}, mimewalk.Options{})
	checkLimit(t, err, mimewalk.LimitDepth)

	_, _, parts, err := collect(t, strings.NewReader(m), mimewalk.Limits{MaxDepth: 40}, mimewalk.Options{})
	if err != nil || len(parts) != 1 || len(parts[0].Path) != 30 {
		t.Fatalf("err %v, parts %v", err, parts)
	}
}
