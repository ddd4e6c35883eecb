package mimewalk

import (
	"bufio"
	"html"
	"io"
	"strings"
)

// htmlText turns an HTML body into plain text, streamed. It is a small state machine rather than
// golang.org/x/net/html's tokenizer because the tokenizer buffers a whole token, and mail HTML
// carries multi-megabyte tokens (images inlined as data: URLs); here a tag is skipped byte by
// byte and only its name (up to 16 bytes) is kept. It drops tags, comments, and the content of
// script, style, head and title; decodes entities; collapses white space; and turns block
// elements into line breaks. It is meant for reading and indexing, not for faithful rendering.
type htmlText struct {
	r   *bufio.Reader
	out []byte // decoded text; out[off:] waits to be read
	off int
	err error

	space    bool // white space seen since the last text
	newlines int  // line breaks owed (block elements), at most 2
	started  bool // some text has been written
}

func newHTMLText(r io.Reader) *htmlText {
	return &htmlText{r: bufio.NewReaderSize(r, bufSize)}
}

const maxEntity = 32

// blockLines says how many line breaks a block element stands for; the text on both sides
// would otherwise run together.
func blockLines(tag string) int {
	switch tag {
	case "p", "h1", "h2", "h3", "h4", "h5", "h6":
		return 2
	case "br", "div", "tr", "li", "ul", "ol", "table", "blockquote", "pre", "hr", "dt", "dd":
		return 1
	}
	return 0
}

// skipContent says whether an element's content is not text.
func skipContent(tag string) bool {
	switch tag {
	case "script", "style", "head", "title":
		return true
	}
	return false
}

func (h *htmlText) Read(p []byte) (int, error) {
	if h.off == len(h.out) {
		h.out, h.off = h.out[:0], 0
	}
	for len(h.out)-h.off < len(p) && h.err == nil {
		h.step()
	}
	n := copy(p, h.out[h.off:])
	h.off += n
	if h.off == len(h.out) && h.err != nil {
		return n, h.err
	}
	return n, nil
}

// step consumes one piece of input: a character, a tag, an entity or a run of white space.
func (h *htmlText) step() {
	c, err := h.r.ReadByte()
	if err != nil {
		h.err = err
		if err == io.EOF && h.started {
			h.out = append(h.out, '\n')
		}
		return
	}
	switch c {
	case '<':
		h.tag()
	case '&':
		h.entity()
	case ' ', '\t', '\r', '\n', '\f':
		h.space = true
	default:
		h.text([]byte{c})
	}
}

func (h *htmlText) text(b []byte) {
	if h.started {
		switch {
		case h.newlines > 0:
			for range h.newlines {
				h.out = append(h.out, '\n')
			}
		case h.space:
			h.out = append(h.out, ' ')
		}
	}
	h.space, h.newlines, h.started = false, 0, true
	h.out = append(h.out, b...)
}

func (h *htmlText) lineBreak(n int) {
	h.newlines = max(h.newlines, n)
}

// tag is called after '<'.
func (h *htmlText) tag() {
	b, err := h.r.Peek(1)
	if err != nil {
		h.text([]byte{'<'})
		return
	}
	switch c := b[0]; {
	case c == '!':
		if p, _ := h.r.Peek(3); string(p) == "!--" {
			h.r.Discard(3)
			h.skipPast("-->")
		} else {
			h.skipPast(">")
		}
		return
	case c == '?':
		h.skipPast(">")
		return
	case c == '/' || isASCIILetter(c):
	default:
		h.text([]byte{'<'}) // "a < b" in sloppy HTML
		return
	}
	end := false
	if b[0] == '/' {
		end = true
		h.r.Discard(1)
	}
	var name []byte
	for {
		c, err := h.r.ReadByte()
		if err != nil {
			h.err = err
			return
		}
		if !isASCIILetter(c) && !('0' <= c && c <= '9') {
			h.r.UnreadByte()
			break
		}
		if len(name) < 16 {
			name = append(name, c|0x20)
		}
	}
	selfClosing := h.skipTagRest()
	n := string(name)
	h.lineBreak(blockLines(n))
	if !end && !selfClosing && skipContent(n) {
		h.skipPastFold("</" + n)
		h.skipTagRest()
	}
}

// skipTagRest skips attributes up to the closing '>', honouring quotes, and reports "/>".
func (h *htmlText) skipTagRest() bool {
	var quote byte
	prev := byte(0)
	for {
		c, err := h.r.ReadByte()
		if err != nil {
			h.err = err
			return false
		}
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '>':
			return prev == '/'
		}
		prev = c
	}
}

// skipPast discards input up to and including s.
func (h *htmlText) skipPast(s string) { h.skip(s, false) }

// skipPastFold is skipPast with ASCII case folding (s must be lower case).
func (h *htmlText) skipPastFold(s string) { h.skip(s, true) }

func (h *htmlText) skip(s string, fold bool) {
	// A window over the last len(s) bytes: simple, and right for self-overlapping s ("--->").
	win := make([]byte, 0, len(s))
	for string(win) != s {
		c, err := h.r.ReadByte()
		if err != nil {
			h.err = err
			return
		}
		if fold && 'A' <= c && c <= 'Z' {
			c |= 0x20
		}
		if len(win) == len(s) {
			win = append(win[:0], win[1:]...)
		}
		win = append(win, c)
	}
}

// entity is called after '&'.
func (h *htmlText) entity() {
	var b []byte
	for len(b) < maxEntity {
		c, err := h.r.ReadByte()
		if err != nil {
			break
		}
		if c == ';' {
			s := html.UnescapeString("&" + string(b) + ";")
			s = strings.ReplaceAll(s, "\u00a0", " ")
			if strings.TrimSpace(s) == "" {
				h.space = true
				return
			}
			h.text([]byte(s))
			return
		}
		if !isASCIILetter(c) && !('0' <= c && c <= '9') && c != '#' {
			h.r.UnreadByte()
			break
		}
		b = append(b, c)
	}
	// Not an entity (or one without ';'): let the standard decoder try, keep the rest literal.
	h.text([]byte(html.UnescapeString("&" + string(b))))
}

func isASCIILetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
