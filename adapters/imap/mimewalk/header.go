package mimewalk

import (
	"bytes"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/unicode/norm"
)

// parseHeaderValue splits a Content-Type or Content-Disposition value into its lower-case token
// and its parameters (keys lower case, values unquoted, RFC 2231 sections not yet joined).
//
// It does not use mime.ParseMediaType, which rejects the whole value for one bad parameter
// ("attachment; filename=my file.pdf") and drops RFC 2231 values in charsets other than UTF-8.
// Instead it is lenient: an unquoted value runs to the next ';', the first occurrence of a
// parameter wins, and a token that is not type/subtype (for Content-Type) gives "".
func parseHeaderValue(v string, mediaType bool) (string, map[string]string) {
	segs := splitParams(v)
	tok := strings.ToLower(strings.TrimSpace(segs[0]))
	// "text/plain charset=x" (a missing ';') and comments: keep the first word only.
	if i := strings.IndexAny(tok, " \t("); i >= 0 {
		tok = tok[:i]
	}
	if mediaType {
		typ, sub, ok := strings.Cut(tok, "/")
		if !ok || !isToken(typ) || !isToken(sub) {
			tok = ""
		}
	} else if !isToken(tok) {
		tok = ""
	}
	params := make(map[string]string, len(segs)-1)
	for _, seg := range segs[1:] {
		k, val, ok := strings.Cut(seg, "=")
		if !ok {
			continue
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "" {
			continue
		}
		val = strings.TrimSpace(val)
		if strings.HasPrefix(val, `"`) {
			val = unquote(val[1:])
		}
		if _, dup := params[k]; !dup {
			params[k] = val
		}
	}
	return tok, params
}

// splitParams splits at ';' outside quoted strings. It always returns at least one element.
func splitParams(v string) []string {
	var segs []string
	start, inQuote := 0, false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == ';':
			segs = append(segs, v[start:i])
			start = i + 1
		}
	}
	return append(segs, v[start:])
}

// unquote reads a quoted string whose opening quote is already gone, up to the closing quote or
// the end (an unterminated quote keeps the rest).
func unquote(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		case c == '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// maxSections caps RFC 2231 continuations; the header limit already bounds them, this only
// keeps the loop short.
const maxSections = 200

// param returns the decoded value of a parameter: RFC 2231 (name*, name*0*, name*1, … in any
// charset x/text knows), else the plain value with encoded-words decoded.
func (w *walker) param(params map[string]string, name string) string {
	if v, ok := params[name+"*"]; ok {
		cs, v := split2231(v)
		if s := decodeCharset(cs, percentDecode(v)); s != "" {
			return s
		}
	}
	var raw []byte
	cs, sections, extended := "", 0, false
	for i := 0; i < maxSections; i++ {
		k := name + "*" + strconv.Itoa(i)
		if v, ok := params[k+"*"]; ok {
			if i == 0 {
				cs, v = split2231(v)
			}
			raw = append(raw, percentDecode(v)...)
			extended = true
		} else if v, ok := params[k]; ok {
			raw = append(raw, v...)
		} else {
			break
		}
		sections++
	}
	if sections > 0 {
		if extended {
			return decodeCharset(cs, raw)
		}
		return w.text(string(raw))
	}
	if v, ok := params[name]; ok {
		return w.text(v)
	}
	return ""
}

// split2231 splits charset'language'value; without the two quotes the whole is the value.
func split2231(v string) (cs, rest string) {
	parts := strings.SplitN(v, "'", 3)
	if len(parts) != 3 {
		return "", v
	}
	return parts[0], parts[2]
}

// percentDecode decodes %XX; a '%' not followed by two hex digits is kept as it is.
func percentDecode(s string) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b = append(b, byte(n))
				i += 2
				continue
			}
		}
		b = append(b, s[i])
	}
	return b
}

// decodeCharset converts b from the named charset to UTF-8. Unknown charsets and invalid UTF-8
// fall back to windows-1252, which maps every byte and is what unlabelled 8-bit mail usually is.
func decodeCharset(cs string, b []byte) string {
	cs = strings.ToLower(strings.TrimSpace(cs))
	if cs != "" && cs != "utf-8" && cs != "utf8" && cs != "us-ascii" {
		if r, err := charset.Reader(cs, bytes.NewReader(b)); err == nil {
			if out, err := io.ReadAll(r); err == nil {
				return string(out)
			}
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	s, _ := charmap.Windows1252.NewDecoder().Bytes(b)
	return string(s)
}

// text decodes a header value: raw 8-bit bytes that are not UTF-8 as windows-1252, then
// encoded-words. A value whose encoded-words cannot be decoded is kept as it is.
func (w *walker) text(s string) string {
	if !utf8.ValidString(s) {
		s = decodeCharset("", []byte(s))
	}
	if strings.Contains(s, "=?") {
		if d, err := w.words.DecodeHeader(s); err == nil {
			s = d
		}
	}
	return s
}

// maxFilename is the usual limit of file systems and object stores, in bytes.
const maxFilename = 255

// cleanFilename makes a sender's filename safe to show and store: NFC (macOS sends NFD), the
// last path element only (no "../"), no control or bidi-override characters (which disguise
// "exe.pdf" as "fdp.exe"), at most maxFilename bytes with the extension kept.
func cleanFilename(s string) string {
	s = norm.NFC.String(s)
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if s == "." || s == ".." {
		return ""
	}
	if len(s) <= maxFilename {
		return s
	}
	ext := ""
	if i := strings.LastIndexByte(s, '.'); i > 0 && len(s)-i <= 16 {
		ext = s[i:]
	}
	stem := s[:maxFilename-len(ext)]
	for !utf8.ValidString(stem) {
		stem = stem[:len(stem)-1]
	}
	return stem + ext
}

func isTNEF(mt, name string) bool {
	return mt == "application/ms-tnef" || mt == "application/vnd.ms-tnef" || strings.EqualFold(name, "winmail.dat")
}

func (w *walker) envelope(h textproto.Header) Envelope {
	env := Envelope{
		MessageID: messageID(w.text(h.Get("Message-Id"))),
		From:      w.addresses(h.Get("From")),
		To:        w.addresses(h.Get("To")),
		Cc:        w.addresses(h.Get("Cc")),
		Subject:   stripControl(w.text(h.Get("Subject"))),
	}
	if d := h.Get("Date"); d != "" {
		if t, err := mail.ParseDate(d); err == nil {
			env.Date = t
		}
	}
	return env
}

// addresses formats an address list as "Name <addr>, …"; a list that does not parse is passed
// on as decoded text, since a sender's name is still worth showing.
func (w *walker) addresses(v string) string {
	if strings.TrimSpace(v) == "" {
		return ""
	}
	if !utf8.ValidString(v) {
		v = decodeCharset("", []byte(v))
	}
	p := mail.AddressParser{WordDecoder: w.words}
	list, err := p.ParseList(v)
	if err != nil {
		return stripControl(w.text(v))
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		if a.Name != "" {
			out = append(out, stripControl(a.Name)+" <"+a.Address+">")
		} else {
			out = append(out, a.Address)
		}
	}
	return strings.Join(out, ", ")
}

func messageID(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	return stripControl(v)
}

func stripControl(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return ' '
		}
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}
