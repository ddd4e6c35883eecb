// Package mimewalk reads one raw mail and hands every leaf that may be a document to a callback,
// streamed, with limits against hostile mail.
//
// It is built on go-message's textproto layer (header and multipart parsing) rather than on its
// mail.Reader, because the ingest needs decisions the mail.Reader makes differently: attachments
// keep their bytes (no charset conversion), malformed Content-Disposition and non-UTF-8 RFC 2231
// filenames are still understood, message/rfc822 parts are descended, and every header block,
// nesting level and part counts against a limit.
package mimewalk

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

// Defaults for a zero (or negative) field of Limits.
const (
	DefaultMaxDepth        = 20
	DefaultMaxParts        = 1000
	DefaultMaxHeaderBytes  = 64 << 10
	DefaultMaxMessageBytes = 100 << 20
	DefaultMaxPartBytes    = 64 << 20
)

// Values of LimitError.What: the name of the Limits field that was broken.
const (
	LimitDepth        = "MaxDepth"
	LimitParts        = "MaxParts"
	LimitHeaderBytes  = "MaxHeaderBytes"
	LimitMessageBytes = "MaxMessageBytes"
	LimitPartBytes    = "MaxPartBytes"
)

// Values of Part.Kind.
const (
	KindAttachment = "attachment"
	KindInline     = "inline"
	KindBody       = "body"
	KindTNEF       = "tnef"
)

// Limits against hostile mail. Zero values mean the defaults in brackets; negative values too,
// since a limit cannot be switched off. Huge values are capped (1 GiB for a header, 1 PiB for
// the others) so that no arithmetic on them overflows.
type Limits struct {
	MaxDepth        int   // nesting of multiparts and message/rfc822 [20]
	MaxParts        int   // parts in the whole tree [1000]
	MaxHeaderBytes  int   // one header block [64 KiB]
	MaxMessageBytes int64 // the whole raw message [100 MiB]
	MaxPartBytes    int64 // one decoded part [64 MiB]
}

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultMaxParts
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxPartBytes <= 0 {
		l.MaxPartBytes = DefaultMaxPartBytes
	}
	l.MaxHeaderBytes = min(l.MaxHeaderBytes, 1<<30) // an int: keep it 32-bit safe
	l.MaxMessageBytes = min(l.MaxMessageBytes, maxLimit)
	l.MaxPartBytes = min(l.MaxPartBytes, maxLimit)
	return l
}

// LimitError says which limit a mail broke; errors.As-able. What is one of the Limit* constants.
type LimitError struct {
	What  string
	Limit int64
}

func (e *LimitError) Error() string {
	switch e.What {
	case LimitDepth:
		return fmt.Sprintf("the mail is nested more than %d levels deep", e.Limit)
	case LimitParts:
		return fmt.Sprintf("the mail has more than %d parts", e.Limit)
	case LimitHeaderBytes:
		return fmt.Sprintf("a header block of the mail is larger than %d bytes", e.Limit)
	case LimitMessageBytes:
		return fmt.Sprintf("the mail is larger than %d bytes", e.Limit)
	case LimitPartBytes:
		return fmt.Sprintf("a part of the mail is larger than %d bytes once decoded", e.Limit)
	}
	return fmt.Sprintf("the mail breaks the limit %s (%d)", e.What, e.Limit)
}

// ErrBrokenPart is wrapped by the error Part.Body.Read returns when the part's content is damaged
// (garbage in base64, a part cut short). If fn returns an error wrapping it (or ignores it), the
// walk goes on and the damage is recorded in Result.Problems.
var ErrBrokenPart = errors.New("the part's content is damaged")

// Options choose extra documents.
type Options struct {
	IncludeBody bool // the text body (text/plain, else text/html turned into text) as a "body" part
}

// Envelope holds the top-level header fields, decoded (encoded-words, charsets; raw 8-bit
// values that are not UTF-8 are read as windows-1252).
type Envelope struct {
	MessageID, From, To, Cc, Subject string // From/To/Cc as "Name <addr>, …"; MessageID without <>
	Date                             time.Time
}

// Part is one leaf handed to fn.
type Part struct {
	Index        int       // 1-based order among the parts passed to fn
	Path         []int     // position in the MIME tree (0-based per level), nested messages included
	Filename     string    // decoded and made safe (no directories, no control or bidi characters, ≤ 255 bytes); "" if none
	DeclaredType string    // media type as the sender declared it (lower case, no params); NOT trusted
	Disposition  string    // "attachment", "inline" or "" as declared
	Kind         string    // KindAttachment, KindInline, KindBody or KindTNEF
	Body         io.Reader // the decoded content, streamed; valid only during fn
}

// Result tells what a walk did besides calling fn.
type Result struct {
	Parts    int      // leaves reported to fn
	Problems []string // skipped parts and why, for logs
}

// Walk reads one raw RFC 5322 message from r and calls fn for every leaf that may be a document:
// every non-multipart part except the message's text/plain or text/html body parts (those only as
// Kind "body" with IncludeBody), with nested message/rfc822 parts descended (their attachments
// are reported; the nested message itself is not), and application/ms-tnef (winmail.dat)
// unpacked into its attached files (Kind "tnef"). Whether a part really is a document is decided
// by the caller by sniffing Body, not here: parts with no Content-Disposition, wrong declared
// types (application/octet-stream PDFs) must still be reported. fn must read Body (or not) and
// return; unread bytes are discarded. A part whose transfer encoding is unknown or broken
// (garbage in base64) is skipped with its error recorded in Result.Problems, not fatal. Breaking
// a limit returns a *LimitError and stops. fn returning an error stops the walk with that error.
//
// Paths: the children of a multipart are numbered from 0; a nested message adds one level whose
// index is always 0 (so the PDF in the second part of a forwarded message that is the second
// part of the mail has Path [1 0 1]); a file unpacked from winmail.dat adds one level with its
// index in the TNEF. The root of a single-part mail has an empty Path.
//
// Kind rules, in order: a disposition "attachment" (or one that is neither "attachment" nor
// "inline", RFC 2183 §2.8) gives "attachment"; a Content-ID gives "inline" (an embedded image,
// even when it has a name); a filename gives "attachment" (Apple Mail sends PDFs as "inline"
// with a filename); a text/plain or text/html leaf is a body part; anything else is "inline".
// Only the first body part of the top-level message becomes the "body" part, and only with
// IncludeBody; body parts of nested messages are never reported. Because the mail is streamed,
// "text/plain, else text/html" means the first of them in the mail's order: a
// multipart/alternative that puts text/html before text/plain (against RFC 2046) yields the HTML.
//
// Damage found in the first 32 KiB of a part's decoded content skips the part before fn sees it;
// damage found later is returned by Body.Read wrapped in ErrBrokenPart (see there).
//
// Walk takes no context: a caller that must cancel makes r fail (closing the connection it reads
// from) or returns an error from fn.
func Walk(r io.Reader, lim Limits, opt Options, fn func(Part) error) (Envelope, Result, error) {
	if fn == nil {
		fn = func(Part) error { return nil }
	}
	w := &walker{
		lim:   lim.withDefaults(),
		opt:   opt,
		fn:    fn,
		words: &mime.WordDecoder{CharsetReader: charset.Reader},
		pre:   make([]byte, prefetchBytes),
	}
	w.src = &sourceReader{r: r, w: w, left: w.lim.MaxMessageBytes}

	g := w.newGate(w.src)
	br := bufio.NewReaderSize(g, bufSize)
	g.arm()
	h, err := textproto.ReadHeader(br)
	g.disarm()
	if err != nil {
		if f := w.fatal(); f != nil {
			return Envelope{}, w.res, f
		}
		if h.Len() == 0 {
			// Nothing usable: the first line is not a header field.
			w.problem(nil, "", "the mail has no readable header (%v)", err)
			return Envelope{}, w.res, nil
		}
		w.problem(nil, "", "the mail's header is malformed (%v); the rest of it is read as the body", err)
	}
	env := w.envelope(h)
	if err = w.entity(h, br, nil, 0, true, false); err == nil {
		// A read error that only surfaced as the end of some part is still the reader failing.
		err = w.fatal()
	}
	return env, w.res, err
}

const (
	// maxLimit caps the byte limits so that limit+1 and limit+gateSlack cannot overflow.
	maxLimit = 1 << 50
	// bufSize is the read-ahead of the header readers; go-message's multipart reader uses the
	// same 4 KiB for its own peek buffer.
	bufSize = 4096
	// gateSlack is how far past MaxHeaderBytes the header gate lets bytes through: up to one
	// read-ahead buffer of go-message's multipart reader plus the boundary line before the header.
	// So a header block within MaxHeaderBytes always passes, and one more than 8 KiB over fails.
	gateSlack = 2 * bufSize
	// prefetchBytes of each part are decoded before fn is called, so that damage near the start
	// skips the part instead of handing fn a body that fails.
	prefetchBytes = 32 << 10
	// maxBoundary guards go-message's multipart reader, whose boundary scan needs the boundary
	// to fit in its 4 KiB buffer; RFC 2046 allows 70 characters.
	maxBoundary = 200
)

// walker is the state of one Walk; nothing outlives it.
type walker struct {
	lim   Limits
	opt   Options
	fn    func(Part) error
	words *mime.WordDecoder
	src   *sourceReader
	pre   []byte // prefetch buffer, reused for every part (a Body is valid only during fn)

	res      Result
	entities int  // header blocks seen, counted against MaxParts
	bodyDone bool // the top-level text body has been met
	limitErr *LimitError
}

// limit records that a limit was broken. The first one wins and sticks: go-message sometimes
// turns the error our readers return into a string, so Walk asks w.limitErr rather than the
// error it got back.
func (w *walker) limit(what string, n int64) error {
	if w.limitErr == nil {
		w.limitErr = &LimitError{What: what, Limit: n}
	}
	return w.limitErr
}

// fatal reports whether the walk must stop: a limit was broken or reading r failed. Any other
// error only concerns the current part or container, which is then skipped with a problem.
func (w *walker) fatal() error {
	if w.limitErr != nil {
		return w.limitErr
	}
	if w.src.err != nil {
		return fmt.Errorf("reading the mail: %w", w.src.err)
	}
	return nil
}

func (w *walker) problem(path []int, name, format string, args ...any) {
	where := "the mail"
	if len(path) > 0 {
		where = "part " + pathString(path)
	}
	if name != "" {
		where += " (" + strconv.Quote(name) + ")"
	}
	w.res.Problems = append(w.res.Problems, where+": "+fmt.Sprintf(format, args...))
}

func pathString(path []int) string {
	s := make([]string, len(path))
	for i, p := range path {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ".")
}

// entity handles one header block and the body that follows it in raw (still transfer-encoded).
// inTop says whether it belongs to the top-level message rather than to a nested one; digest
// whether its parent is a multipart/digest (whose parts default to message/rfc822).
func (w *walker) entity(h textproto.Header, raw io.Reader, path []int, depth int, inTop, digest bool) error {
	w.entities++
	if w.entities > w.lim.MaxParts {
		return w.limit(LimitParts, int64(w.lim.MaxParts))
	}
	if depth > w.lim.MaxDepth {
		return w.limit(LimitDepth, int64(w.lim.MaxDepth))
	}
	declared, ctParams := parseHeaderValue(h.Get("Content-Type"), true)
	mt := declared
	if mt == "" {
		// RFC 2045 §5.2 and RFC 2046 §5.1.5; a Content-Type we cannot parse also lands here.
		mt = "text/plain"
		if digest {
			mt = "message/rfc822"
		}
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		return w.multipart(raw, ctParams["boundary"], mt == "multipart/digest", path, depth, inTop)
	case mt == "message/rfc822" || mt == "message/global":
		return w.nested(h, raw, path, depth)
	}
	return w.leaf(h, raw, declared, mt, ctParams, path, inTop)
}

func (w *walker) multipart(raw io.Reader, boundary string, digest bool, path []int, depth int, inTop bool) error {
	if boundary == "" || len(boundary) > maxBoundary {
		w.problem(path, "", "a multipart without a usable boundary; its content was skipped")
		return nil
	}
	g := w.newGate(raw)
	mr := textproto.NewMultipartReader(g, boundary)
	for i := 0; ; i++ {
		g.arm()
		p, err := mr.NextPart()
		g.disarm()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if f := w.fatal(); f != nil {
				return f
			}
			w.problem(path, "", "the multipart structure is broken after %d parts (%v); the rest of it was skipped", i, err)
			return nil
		}
		child := append(slices.Clone(path), i)
		body := &unterminated{r: p}
		if err := w.entity(p.Header, body, child, depth+1, inTop, digest); err != nil {
			return err
		}
		// Whatever the child left unread (a body fn did not read, the epilogue of a nested
		// multipart) is skipped here with the gate disarmed, so it never counts as header bytes.
		// It is not decoded, so MaxPartBytes does not apply; MaxMessageBytes does.
		if _, err := io.Copy(io.Discard, body); err != nil {
			if f := w.fatal(); f != nil {
				return f
			}
		}
		if body.hit {
			if f := w.fatal(); f != nil {
				return f // the input did not end, it failed
			}
			w.problem(child, "", "the mail ends inside this part, without a closing boundary; it may be incomplete")
			return nil
		}
	}
}

// unterminated turns the io.ErrUnexpectedEOF of go-message's part reader (the input ended
// before the closing boundary) into io.EOF. Mailers that leave out the closing boundary are
// common and the part is then usually whole, so it is handed on, with a problem noted.
type unterminated struct {
	r   io.Reader
	hit bool
}

func (u *unterminated) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if err == io.ErrUnexpectedEOF {
		u.hit, err = true, io.EOF
	}
	return n, err
}

// nested descends into a message/rfc822 part: its header is parsed like the top-level one and
// its body walked as a new tree one level deeper.
func (w *walker) nested(h textproto.Header, raw io.Reader, path []int, depth int) error {
	dec, err := transferDecoder(h.Get("Content-Transfer-Encoding"), raw)
	if err != nil {
		w.problem(path, "", "a forwarded message was skipped: %v", err)
		return nil
	}
	g := w.newGate(dec)
	br := bufio.NewReaderSize(g, bufSize)
	g.arm()
	nh, err := textproto.ReadHeader(br)
	g.disarm()
	if err != nil {
		if f := w.fatal(); f != nil {
			return f
		}
		if nh.Len() == 0 {
			w.problem(path, "", "a forwarded message without a readable header was skipped (%v)", err)
			return nil
		}
		w.problem(path, "", "a forwarded message's header is malformed (%v); the rest of it is read as its body", err)
	}
	return w.entity(nh, br, append(slices.Clone(path), 0), depth+1, false, false)
}

func (w *walker) leaf(h textproto.Header, raw io.Reader, declared, mt string, ctParams map[string]string, path []int, inTop bool) error {
	dispToken, dispParams := parseHeaderValue(h.Get("Content-Disposition"), false)
	name := w.param(dispParams, "filename")
	if name == "" {
		name = w.param(ctParams, "name")
	}
	name = cleanFilename(name)

	p := Part{Path: path, Filename: name, DeclaredType: declared}
	if dispToken == "attachment" || dispToken == "inline" {
		p.Disposition = dispToken
	}
	switch {
	case dispToken != "" && dispToken != "inline":
		p.Kind = KindAttachment
	case strings.TrimSpace(h.Get("Content-Id")) != "":
		p.Kind = KindInline
	case name != "":
		p.Kind = KindAttachment
	case mt == "text/plain" || mt == "text/html":
		if !inTop || !w.opt.IncludeBody || w.bodyDone {
			return nil // a body part, not a document
		}
		w.bodyDone = true
		p.Kind = KindBody
	default:
		p.Kind = KindInline
	}

	dec, err := transferDecoder(h.Get("Content-Transfer-Encoding"), raw)
	if err != nil {
		w.problem(path, name, "skipped: %v", err)
		return nil
	}
	body, err := w.prefetch(dec)
	if err != nil {
		if f := w.fatal(); f != nil {
			return f
		}
		w.problem(path, name, "skipped: the content is damaged (%v)", err)
		return nil
	}

	switch {
	case p.Kind == KindBody:
		body = w.bodyText(mt, ctParams["charset"], body, path)
	case isTNEF(mt, name):
		return w.tnef(p, body)
	}
	return w.emit(p, body)
}

// prefetch decodes the start of a part before fn sees it; see prefetchBytes.
func (w *walker) prefetch(r io.Reader) (io.Reader, error) {
	n := 0
	var err error
	for n < len(w.pre) && err == nil {
		var m int
		m, err = r.Read(w.pre[n:])
		n += m
	}
	switch {
	case err == io.EOF:
		return bytes.NewReader(w.pre[:n]), nil
	case err != nil:
		return nil, err
	}
	return io.MultiReader(bytes.NewReader(w.pre[:n]), r), nil
}

// bodyText turns a text body into UTF-8 text: charset conversion, and HTML to text.
func (w *walker) bodyText(mt, cs string, r io.Reader, path []int) io.Reader {
	if cs = strings.ToLower(strings.TrimSpace(cs)); cs != "" && cs != "utf-8" && cs != "us-ascii" {
		if cr, err := charset.Reader(cs, r); err == nil {
			r = cr
		} else {
			w.problem(path, "", "the body's charset %q is unknown; the body is passed on unconverted", cs)
		}
	}
	if mt == "text/html" {
		r = newHTMLText(r)
	}
	return r
}

// emit hands one part to fn and sorts out what fn and Body reported.
func (w *walker) emit(p Part, r io.Reader) error {
	w.res.Parts++
	p.Index = w.res.Parts
	b := &partBody{r: r, w: w, left: w.lim.MaxPartBytes}
	p.Body = b
	err := w.fn(p)
	b.done = true
	if w.limitErr != nil {
		// Also when fn swallowed the LimitError Body.Read gave it.
		return w.limitErr
	}
	if err != nil && !(b.broken != nil && errors.Is(err, ErrBrokenPart)) {
		return err
	}
	if f := w.fatal(); f != nil {
		return f
	}
	if b.broken != nil {
		w.problem(p.Path, p.Filename, "%v", b.broken)
	}
	return nil
}

// partBody is Part.Body: it enforces MaxPartBytes on what fn reads, tells damage from fatal
// errors, and stops working once fn has returned.
type partBody struct {
	r      io.Reader
	w      *walker
	left   int64
	done   bool
	err    error // sticky
	broken error // damage met, wrapped in ErrBrokenPart
}

var errBodyAfterFn = errors.New("mimewalk: Part.Body read after fn returned")

func (b *partBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, errBodyAfterFn
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p))-1 > b.left {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	if int64(n) > b.left {
		b.err = b.w.limit(LimitPartBytes, b.w.lim.MaxPartBytes)
		n = int(b.left)
		b.left = 0
		return n, b.err
	}
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		if f := b.w.fatal(); f != nil {
			err = f
		} else {
			b.broken = fmt.Errorf("%w: %v", ErrBrokenPart, err)
			err = b.broken
		}
		b.err = err
	}
	return n, err
}

// sourceReader wraps r: it enforces MaxMessageBytes and remembers the first read error, which
// is fatal (the connection broke) unlike damage inside the mail.
type sourceReader struct {
	r    io.Reader
	w    *walker
	left int64
	err  error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if int64(len(p))-1 > s.left {
		p = p[:s.left+1]
	}
	n, err := s.r.Read(p)
	if int64(n) > s.left {
		// The error is not stored in s.err: w.limitErr already makes it fatal, and s.err is for
		// the reader's own failures.
		n = int(s.left)
		s.left = 0
		return n, s.w.limit(LimitMessageBytes, s.w.lim.MaxMessageBytes)
	}
	s.left -= int64(n)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// gate bounds a header block. go-message reads part headers through its own buffered reader
// with no limit, so the gate sits under that buffer and counts the bytes pulled through it while
// armed (around NextPart or ReadHeader); see gateSlack for the precision.
type gate struct {
	r    io.Reader
	w    *walker
	left int64 // < 0 when disarmed
}

func (w *walker) newGate(r io.Reader) *gate { return &gate{r: r, w: w, left: -1} }

func (g *gate) arm()    { g.left = int64(g.w.lim.MaxHeaderBytes) + gateSlack }
func (g *gate) disarm() { g.left = -1 }

func (g *gate) Read(p []byte) (int, error) {
	if g.left < 0 {
		return g.r.Read(p)
	}
	if g.left == 0 {
		return 0, g.w.limit(LimitHeaderBytes, int64(g.w.lim.MaxHeaderBytes))
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, err := g.r.Read(p)
	g.left -= int64(n)
	return n, err
}
