package mimewalk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/traditionalchinese"
)

// tnef unpacks a winmail.dat. TNEF needs random access (attachment data comes before or after
// the properties that name it, lengths point forward), so the decoded part is read into memory,
// up to MaxPartBytes: this is the one place where a part is held whole. A TNEF that cannot be
// parsed is reported as the plain attachment it is, with a problem.
func (w *walker) tnef(p Part, body io.Reader) error {
	data, err := io.ReadAll(io.LimitReader(body, w.lim.MaxPartBytes+1))
	if err != nil {
		if f := w.fatal(); f != nil {
			return f
		}
		w.problem(p.Path, p.Filename, "skipped: the content is damaged (%v)", err)
		return nil
	}
	if int64(len(data)) > w.lim.MaxPartBytes {
		return w.limit(LimitPartBytes, w.lim.MaxPartBytes)
	}
	files, notes, err := parseTNEF(data)
	for _, n := range notes {
		w.problem(p.Path, p.Filename, "%s", n)
	}
	if err != nil {
		w.problem(p.Path, p.Filename, "not unpacked (%v); passed on as it is", err)
		return w.emit(p, bytes.NewReader(data))
	}
	for i, f := range files {
		w.entities++
		if w.entities > w.lim.MaxParts {
			return w.limit(LimitParts, int64(w.lim.MaxParts))
		}
		mt, _ := parseHeaderValue(f.MIMEType, true)
		tp := Part{
			Path:         append(slices.Clone(p.Path), i),
			Filename:     cleanFilename(f.Name),
			DeclaredType: mt,
			Kind:         KindTNEF,
		}
		if err := w.emit(tp, bytes.NewReader(f.Data)); err != nil {
			return err
		}
	}
	return nil
}

// tnefFile is one file unpacked from a TNEF stream; Data points into the TNEF bytes.
type tnefFile struct {
	Name     string
	MIMEType string
	Data     []byte
}

// TNEF constants from [MS-OXTNEF]. Attribute IDs are matched on their low 16 bits (the high 16
// are the attribute type, which some writers get wrong).
const (
	tnefSignature = 0x223E9F78

	lvlMessage    = 0x01
	lvlAttachment = 0x02

	attAttachData     = 0x800F
	attAttachTitle    = 0x8010
	attAttachRendData = 0x9002
	attAttachment     = 0x9005
	attOemCodepage    = 0x9007

	prAttachDataBin      = 0x3701
	prAttachFilename     = 0x3704
	prAttachMethod       = 0x3705
	prAttachLongFilename = 0x3707
	prAttachMimeTag      = 0x370E
	prDisplayName        = 0x3001

	ptString8 = 0x001E
	ptUnicode = 0x001F
	ptBinary  = 0x0102
	ptObject  = 0x000D
	ptMV      = 0x1000

	attachEmbeddedMsg = 5
)

var errNotTNEF = errors.New("no TNEF signature")

type tnefAttachment struct {
	title                           []byte // attAttachTitle: 8-bit, in the OEM code page
	longName, filename, displayName mapiString
	mimeTag                         mapiString
	data                            []byte
	hasData                         bool
	method                          uint32
}

// mapiString is a string property kept raw until the code page is known.
type mapiString struct {
	b       []byte
	unicode bool
}

// parseTNEF extracts the attached files. Every length in the stream is hostile: each one is
// checked against what is left before it is used, and nothing is allocated from a length. An
// error means the stream is corrupt; notes tell about attachments that were left out (embedded
// messages, OLE objects: no file data). Checksums are not verified: writers get them wrong and
// the structure checks already catch a stream that is out of step.
func parseTNEF(b []byte) (files []tnefFile, notes []string, err error) {
	r := leReader{b: b}
	if r.u32() != tnefSignature || r.bad {
		return nil, nil, errNotTNEF
	}
	r.u16() // legacy key
	if len(r.b) == 0 {
		return nil, nil, errors.New("no attributes")
	}
	codepage := uint32(1252)
	var atts []*tnefAttachment
	var cur *tnefAttachment
	for len(r.b) > 0 {
		start := len(b) - len(r.b)
		level := r.u8()
		id := r.u32() & 0xFFFF
		n := r.u32()
		data := r.take(uint64(n))
		r.u16() // checksum
		if r.bad {
			return nil, nil, fmt.Errorf("attribute at byte %d runs past the end", start)
		}
		switch level {
		case lvlMessage:
			if id == attOemCodepage && len(data) >= 4 {
				codepage = binary.LittleEndian.Uint32(data)
			}
		case lvlAttachment:
			// attAttachRendData opens each attachment; be lenient if a writer skipped it.
			if id == attAttachRendData || cur == nil {
				cur = &tnefAttachment{}
				atts = append(atts, cur)
			}
			switch id {
			case attAttachTitle:
				cur.title = data
			case attAttachData:
				cur.data, cur.hasData = data, true
			case attAttachment:
				// Damaged properties only lose names; the file data is elsewhere.
				parseAttachProps(data, cur)
			}
		default:
			return nil, nil, fmt.Errorf("unknown attribute level %d at byte %d", level, start)
		}
	}
	for i, a := range atts {
		name := a.name(codepage)
		if !a.hasData || a.method == attachEmbeddedMsg {
			if name == "" {
				name = fmt.Sprintf("#%d", i+1)
			}
			notes = append(notes, fmt.Sprintf("winmail.dat attachment %q has no file data (an embedded message or object); left out", name))
			continue
		}
		if name == "" {
			name = fmt.Sprintf("attachment-%d.bin", i+1)
		}
		files = append(files, tnefFile{Name: name, MIMEType: decodeString(a.mimeTag.b, a.mimeTag.unicode, codepage), Data: a.data})
	}
	return files, notes, nil
}

func (a *tnefAttachment) name(cp uint32) string {
	// The long filename first: attAttachTitle is often the 8.3 short name.
	for _, c := range []mapiString{a.longName, a.filename, {b: a.title}, a.displayName} {
		if s := strings.TrimSpace(decodeString(c.b, c.unicode, cp)); s != "" {
			return s
		}
	}
	return ""
}

// parseAttachProps reads the MAPI properties of an attachment ([MS-OXTNEF] 2.1.3.4) and keeps
// the few we use. It stops quietly at the first thing it cannot read.
func parseAttachProps(b []byte, a *tnefAttachment) {
	r := leReader{b: b}
	count := r.u32()
	for i := uint32(0); i < count && !r.bad && len(r.b) > 0; i++ {
		ptype := r.u16()
		pid := r.u16()
		if pid >= 0x8000 { // named property: GUID, kind, then an ID or a name
			r.take(16)
			if r.u32() == 0 {
				r.u32()
			} else {
				r.take(pad4(uint64(r.u32())))
			}
		}
		base := ptype &^ ptMV
		vals := uint32(1)
		variable := base == ptString8 || base == ptUnicode || base == ptBinary || base == ptObject
		if ptype&ptMV != 0 || variable {
			vals = r.u32()
		}
		for j := uint32(0); j < vals && !r.bad; j++ {
			var v []byte
			if variable {
				n := uint64(r.u32())
				v = r.take(n)
				r.take(pad4(n) - n)
			} else {
				size := fixedSize(base)
				if size == 0 {
					return // unknown type: its size is unknown, so nothing after it can be read
				}
				v = r.take(size)
			}
			if r.bad || j > 0 {
				continue
			}
			str := mapiString{b: v, unicode: base == ptUnicode}
			switch pid {
			case prAttachLongFilename:
				a.longName = str
			case prAttachFilename:
				a.filename = str
			case prDisplayName:
				a.displayName = str
			case prAttachMimeTag:
				a.mimeTag = str
			case prAttachMethod:
				if len(v) >= 4 {
					a.method = binary.LittleEndian.Uint32(v)
				}
			case prAttachDataBin:
				if base == ptBinary && !a.hasData {
					a.data, a.hasData = v, true
				}
			}
		}
	}
}

// fixedSize is the size in the stream of a fixed-length MAPI value (padded to 4 bytes), 0 for
// types we do not know.
func fixedSize(t uint16) uint64 {
	switch t {
	case 0x0001, 0x0002, 0x0003, 0x0004, 0x000A, 0x000B: // null, short, long, float, error, boolean
		return 4
	case 0x0005, 0x0006, 0x0007, 0x0014, 0x0040: // double, currency, apptime, int64, systime
		return 8
	case 0x0048: // clsid
		return 16
	}
	return 0
}

func pad4(n uint64) uint64 { return (n + 3) &^ 3 }

// decodeString decodes a TNEF string: UTF-16LE, or 8-bit in the stream's OEM code page; both
// end at the first NUL.
func decodeString(b []byte, unicode bool, cp uint32) string {
	if unicode {
		u := make([]uint16, 0, len(b)/2)
		for i := 0; i+1 < len(b); i += 2 {
			c := binary.LittleEndian.Uint16(b[i:])
			if c == 0 {
				break
			}
			u = append(u, c)
		}
		return string(utf16.Decode(u))
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	if enc := codepage(cp); enc != nil {
		if s, err := enc.NewDecoder().Bytes(b); err == nil {
			return string(s)
		}
	}
	if utf8.Valid(b) {
		return string(b)
	}
	s, _ := charmap.Windows1252.NewDecoder().Bytes(b)
	return string(s)
}

// codepage maps the Windows code pages TNEF writers use; nil for UTF-8 and unknown ones.
func codepage(cp uint32) encoding.Encoding {
	switch cp {
	case 437:
		return charmap.CodePage437
	case 850:
		return charmap.CodePage850
	case 874:
		return charmap.Windows874
	case 932:
		return japanese.ShiftJIS
	case 936:
		return simplifiedchinese.GBK
	case 949:
		return korean.EUCKR
	case 950:
		return traditionalchinese.Big5
	case 1250:
		return charmap.Windows1250
	case 1251:
		return charmap.Windows1251
	case 1252:
		return charmap.Windows1252
	case 1253:
		return charmap.Windows1253
	case 1254:
		return charmap.Windows1254
	case 1255:
		return charmap.Windows1255
	case 1256:
		return charmap.Windows1256
	case 1257:
		return charmap.Windows1257
	case 1258:
		return charmap.Windows1258
	case 28591:
		return charmap.ISO8859_1
	case 28592:
		return charmap.ISO8859_2
	case 28605:
		return charmap.ISO8859_15
	}
	return nil
}

// leReader reads little-endian values; past the end it returns zeros and sets bad, so callers
// check once after a group of reads.
type leReader struct {
	b   []byte
	bad bool
}

func (r *leReader) take(n uint64) []byte {
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *leReader) u8() byte {
	if v := r.take(1); !r.bad {
		return v[0]
	}
	return 0
}

func (r *leReader) u16() uint16 {
	if v := r.take(2); !r.bad {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *leReader) u32() uint32 {
	if v := r.take(4); !r.bad {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}
