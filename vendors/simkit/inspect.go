package simkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"math"
	"unicode/utf8"
)

// The simulators judge an upload by a few facts (its size, digest, magic number, whether some
// string occurs in it, whether it is text) that need one pass over the bytes, not the bytes
// themselves. An Inspector gathers them as the bytes stream by, so a simulator holds one read
// buffer per upload instead of the whole document: with a sandbox vendor in the service's own
// process, documents in flight would otherwise count twice against its memory.

const (
	// DefaultHeadSize is how much of the beginning an Inspection keeps: enough for every magic
	// number the simulators check and for http.DetectContentType (which reads 512 bytes).
	DefaultHeadSize = 4 << 10
	// chunkSize is the read buffer of Inspect.
	chunkSize = 32 << 10
)

// InspectConfig says what an Inspector keeps of a stream.
type InspectConfig struct {
	// Limit is the most bytes inspected. A stream with more is Over, and only Limit+1 bytes of it
	// are read by Inspect. Negative means no limit; 0 means only an empty stream fits.
	Limit int64
	// Markers are strings to look for anywhere in the inspected bytes.
	Markers []string
	// HeadSize is how many leading bytes to keep; 0 means DefaultHeadSize.
	HeadSize int
	// Also, if set, gets every inspected byte in order (never those past the limit): for what a
	// single simulator derives besides (page counts, per-page digests).
	Also io.Writer
}

// Inspection is what an Inspector learnt. When Over, it describes only the first Limit bytes.
type Inspection struct {
	Size   int64 // bytes inspected
	Over   bool  // the stream had more than Limit bytes
	SHA256 [sha256.Size]byte
	Head   []byte // the first HeadSize bytes (fewer when the stream is shorter)
	// Text is IsText of the inspected bytes.
	Text bool

	markers []string
	found   []bool
}

// Hex is the SHA-256 in lower-case hex, as the Ledger and Digest have it.
func (in Inspection) Hex() string { return hex.EncodeToString(in.SHA256[:]) }

// Has reports whether marker occurs in the inspected bytes. Asking about a string that was not
// one of the Markers is a programming error and panics: a silent false would read as "absent".
func (in Inspection) Has(marker string) bool {
	for i, m := range in.markers {
		if m == marker {
			return in.found[i]
		}
	}
	panic("simkit: Has(" + marker + ") asked of an Inspection that was not looking for it")
}

// HasPrefix reports whether the inspected bytes begin with prefix (which must not be longer
// than the head).
func (in Inspection) HasPrefix(prefix string) bool {
	return bytes.HasPrefix(in.Head, []byte(prefix))
}

// Inspector is an io.Writer that inspects what is written to it in one pass, keeping only a
// small state whatever the size of the stream. Writes never fail unless Also fails.
type Inspector struct {
	cfg   InspectConfig
	h     hash.Hash
	size  int64
	over  bool
	head  []byte
	found []bool
	// maxMarker is the longest marker's length. carry holds the last maxMarker-1 bytes seen so
	// that a marker split between two writes is found; win is where they meet the next write.
	maxMarker int
	carry     []byte
	win       []byte
	// text stays true while every complete rune so far is printable; pend holds the first bytes
	// of a rune that the last write cut in two.
	text  bool
	pend  [utf8.UTFMax]byte
	npend int
}

// NewInspector returns an Inspector for cfg.
func NewInspector(cfg InspectConfig) *Inspector {
	if cfg.HeadSize <= 0 {
		cfg.HeadSize = DefaultHeadSize
	}
	in := &Inspector{cfg: cfg, h: sha256.New(), text: true, found: make([]bool, len(cfg.Markers))}
	for i, m := range cfg.Markers {
		in.maxMarker = max(in.maxMarker, len(m))
		in.found[i] = m == "" // as bytes.Contains has it
	}
	if in.maxMarker > 1 {
		in.carry = make([]byte, 0, in.maxMarker-1)
		in.win = make([]byte, 0, 2*(in.maxMarker-1))
	}
	return in
}

// Write inspects p, or the part of it within the limit. It always takes all of p.
func (in *Inspector) Write(p []byte) (int, error) {
	n := len(p)
	if in.cfg.Limit >= 0 && int64(len(p)) > in.cfg.Limit-in.size {
		p = p[:in.cfg.Limit-in.size]
		in.over = true
	}
	if len(p) == 0 {
		return n, nil
	}
	in.size += int64(len(p))
	in.h.Write(p)
	if len(in.head) < in.cfg.HeadSize {
		if in.head == nil {
			in.head = make([]byte, 0, in.cfg.HeadSize) // once, rather than growing by appends
		}
		in.head = append(in.head, p[:min(len(p), in.cfg.HeadSize-len(in.head))]...)
	}
	in.markers(p)
	if in.text {
		in.scanText(p)
	}
	if in.cfg.Also != nil {
		if _, err := in.cfg.Also.Write(p); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// markers looks for the markers not found yet in p and where p meets what came before.
func (in *Inspector) markers(p []byte) {
	missing := false
	for i, m := range in.cfg.Markers {
		if !in.found[i] {
			in.found[i] = bytes.Contains(p, []byte(m))
			missing = missing || !in.found[i]
		}
	}
	if in.maxMarker <= 1 {
		return // a marker of one byte cannot be split
	}
	keep := in.maxMarker - 1
	// A marker split at this boundary starts in the last keep bytes before p and ends in the
	// first keep bytes of p.
	in.win = append(append(in.win[:0], in.carry...), p[:min(len(p), keep)]...)
	if missing && len(in.carry) > 0 {
		for i, m := range in.cfg.Markers {
			if !in.found[i] {
				in.found[i] = bytes.Contains(in.win, []byte(m))
			}
		}
	}
	// The new carry is the last keep bytes of everything so far.
	if len(p) >= keep {
		in.carry = append(in.carry[:0], p[len(p)-keep:]...)
	} else {
		in.carry = append(in.carry[:0], in.win[len(in.win)-min(len(in.win), keep):]...)
	}
}

// scanText checks p's runes, finishing first a rune the previous write cut in two.
func (in *Inspector) scanText(p []byte) {
	for in.npend > 0 && len(p) > 0 {
		in.pend[in.npend] = p[0]
		in.npend++
		p = p[1:]
		if utf8.FullRune(in.pend[:in.npend]) {
			r, size := utf8.DecodeRune(in.pend[:in.npend])
			if !printable(r, size) {
				in.text = false
				return
			}
			// A full rune is never shorter than the bytes held: FullRune said so at the first
			// byte that completed it, and bytes after it are still in p.
			in.npend = 0
		}
	}
	for i := 0; i < len(p); {
		if c := p[i]; c < utf8.RuneSelf {
			if !printable(rune(c), 1) {
				in.text = false
				return
			}
			i++
			continue
		}
		if !utf8.FullRune(p[i:]) {
			in.npend = copy(in.pend[:], p[i:])
			return
		}
		r, size := utf8.DecodeRune(p[i:])
		if !printable(r, size) {
			in.text = false
			return
		}
		i += size
	}
}

// printable is IsText's rule for one decoded rune.
func printable(r rune, size int) bool {
	if r == utf8.RuneError && size == 1 {
		return false // not UTF-8
	}
	return !(r < 0x20 && r != '\t' && r != '\n' && r != '\r' && r != '\f' || r == 0x7f)
}

// Inspection returns what was learnt so far.
func (in *Inspector) Inspection() Inspection {
	out := Inspection{
		Size: in.size, Over: in.over, Head: in.head[:len(in.head):len(in.head)],
		// A rune still cut in two at the end is not UTF-8.
		Text:    in.text && in.npend == 0,
		markers: in.cfg.Markers, found: append([]bool(nil), in.found...),
	}
	in.h.Sum(out.SHA256[:0])
	return out
}

// Inspect reads r in bounded chunks, no further than one byte past limit, and returns what it
// holds (see InspectConfig for limit and markers). A read error is returned with what was
// inspected before it.
func Inspect(r io.Reader, limit int64, markers ...string) (Inspection, error) {
	return InspectWith(r, InspectConfig{Limit: limit, Markers: markers})
}

// InspectWith is Inspect with every setting.
func InspectWith(r io.Reader, cfg InspectConfig) (Inspection, error) {
	in := NewInspector(cfg)
	if cfg.Limit >= 0 && cfg.Limit < math.MaxInt64 {
		// One byte more than the limit tells "exactly the limit" from "over it".
		r = io.LimitReader(r, cfg.Limit+1)
	}
	_, err := io.CopyBuffer(in, r, make([]byte, chunkSize))
	return in.Inspection(), err
}

// IsText reports whether b is UTF-8 without control characters other than tab, line feed,
// carriage return and form feed: what a simulator takes for a plain-text document. It is the
// whole-content form of Inspection.Text.
func IsText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !printable(r, 0) {
			return false
		}
	}
	return true
}
