package mimewalk

import (
	"encoding/base64"
	"fmt"
	"io"
	"mime/quotedprintable"
	"strings"
)

// transferDecoder undoes a Content-Transfer-Encoding. An unknown encoding (x-uuencode, binhex,
// typos) is an error: the part is skipped rather than handed on still encoded.
func transferDecoder(cte string, r io.Reader) (io.Reader, error) {
	enc := strings.ToLower(strings.TrimSpace(cte))
	// "base64;" and similar junk after the token is seen in the wild.
	if i := strings.IndexAny(enc, "; \t"); i >= 0 {
		enc = enc[:i]
	}
	switch enc {
	case "", "7bit", "8bit", "binary":
		return r, nil
	case "base64":
		return base64.NewDecoder(base64.RawStdEncoding, &base64Filter{r: r}), nil
	case "quoted-printable":
		return quotedprintable.NewReader(r), nil
	}
	return nil, fmt.Errorf("unknown transfer encoding %q", cte)
}

// base64Filter passes on only base64 alphabet characters, so that the standard decoder (given
// no padding) can decode what mail really contains: line breaks, spaces from badly folded
// bodies, a missing final "=". It stops at the first "=" (the padding ends the data; what a
// broken mailer puts after it is ignored) and fails on any other character: that is the garbage
// that makes a part damaged.
type base64Filter struct {
	r    io.Reader
	off  int64 // input bytes consumed, for the error message
	done bool
	err  error
}

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		if f.err != nil {
			return 0, f.err
		}
		if f.done {
			return 0, io.EOF
		}
		n, err := f.r.Read(p)
		j := 0
	scan:
		for i := 0; i < n; i++ {
			c := p[i]
			switch {
			case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
				p[j] = c
				j++
			case c == ' ', c == '\t', c == '\r', c == '\n':
			case c == '=':
				f.done = true
				break scan
			default:
				f.err = fmt.Errorf("not base64: byte %q at offset %d", c, f.off+int64(i))
				break scan
			}
		}
		f.off += int64(n)
		if err != nil && f.err == nil && !f.done {
			f.err = err
		}
		if j > 0 {
			return j, nil
		}
	}
}
