package mimewalk

import (
	"bytes"
	"encoding/binary"
	"io"
	"maps"
	"mime"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-message/charset"
)

func TestParseHeaderValue(t *testing.T) {
	tests := []struct {
		in        string
		mediaType bool
		tok       string
		params    map[string]string
	}{
		{`application/PDF; name="a b.pdf"`, true, "application/pdf", map[string]string{"name": "a b.pdf"}},
		{`attachment; filename=my file.pdf`, false, "attachment", map[string]string{"filename": "my file.pdf"}},
		{`attachment; filename="a;b.pdf"; size=3`, false, "attachment", map[string]string{"filename": "a;b.pdf", "size": "3"}},
		{`attachment; filename="q\"uote.pdf"`, false, "attachment", map[string]string{"filename": `q"uote.pdf`}},
		{`attachment; filename="unterminated.pdf`, false, "attachment", map[string]string{"filename": "unterminated.pdf"}},
		{`text/plain charset=us-ascii`, true, "text/plain", map[string]string{}},
		{`garbage`, true, "", map[string]string{}},
		{``, true, "", map[string]string{}},
		{`INLINE;FILENAME=x.pdf;filename=y.pdf`, false, "inline", map[string]string{"filename": "x.pdf"}},
		{`multipart/mixed; boundary="=_a;b"`, true, "multipart/mixed", map[string]string{"boundary": "=_a;b"}},
	}
	for _, tt := range tests {
		tok, params := parseHeaderValue(tt.in, tt.mediaType)
		if tok != tt.tok || !maps.Equal(params, tt.params) {
			t.Errorf("parseHeaderValue(%q) = %q %v, want %q %v", tt.in, tok, params, tt.tok, tt.params)
		}
	}
}

func TestParam(t *testing.T) {
	w := &walker{words: &mime.WordDecoder{CharsetReader: charset.Reader}}
	tests := []struct {
		header string
		want   string
	}{
		{`attachment; filename*=UTF-8''%E2%82%AC.pdf`, "€.pdf"},
		{`attachment; filename*=iso-8859-15''%A4.pdf`, "€.pdf"}, // ¤ in latin-1, € in latin-9
		{`attachment; filename*=unknown-charset''M%E4rz.pdf`, "März.pdf"},
		{`attachment; filename*=''plain.pdf`, "plain.pdf"},
		{`attachment; filename*=no-quotes%20here.pdf`, "no-quotes here.pdf"},
		{`attachment; filename*0="a"; filename*1="b.pdf"`, "ab.pdf"},
		{`attachment; filename*0="a"; filename*2="gap.pdf"`, "a"},
		{`attachment; filename*=utf-8''new.pdf; filename="old.pdf"`, "new.pdf"},
		{`attachment; filename="=?utf-8?B?w6QucGRm?="`, "ä.pdf"},
		{`attachment; filename="100%.pdf"`, "100%.pdf"},
		{`attachment; filename*=utf-8''100%.pdf`, "100%.pdf"},
		{`attachment`, ""},
	}
	for _, tt := range tests {
		_, params := parseHeaderValue(tt.header, false)
		if got := w.param(params, "filename"); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.header, got, tt.want)
		}
	}
}

func TestCleanFilename(t *testing.T) {
	long := strings.Repeat("ä", 200) + ".pdf"
	tests := []struct{ in, want string }{
		{"../../etc/passwd", "passwd"},
		{`C:\Users\x\Rechnung.pdf`, "Rechnung.pdf"},
		{"a\x00b\r\nc.pdf", "abc.pdf"},
		{"invoice\u202Efdp.exe", "invoicefdp.exe"},
		{"Ma\u0308rz.pdf", "März.pdf"}, // NFD from macOS
		{"  spaced.pdf  ", "spaced.pdf"},
		{"..", ""},
		{long, strings.Repeat("ä", 125) + ".pdf"},
	}
	for _, tt := range tests {
		if got := cleanFilename(tt.in); got != tt.want {
			t.Errorf("cleanFilename(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHTMLText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<p>a</p><p>b</p>", "a\n\nb\n"},
		{"a<br>b<br/>c", "a\nb\nc\n"},
		{"<b>bold</b>  and\n\n<i>italic</i>", "bold and italic\n"},
		{"x<script type='a>b'>var s = '</p>';</script>y", "xy\n"},
		{"<STYLE>p{}</STYLE>z", "z\n"},
		{"a<!-- <p> --->b", "ab\n"},
		{"1 < 2 &lt; 3 &amp;&amp; &#228;&#xE4; &unknown; &amp", "1 < 2 < 3 && ää &unknown; &\n"},
		{`<img src="data:image/png;base64,` + strings.Repeat("A", 100000) + `">after`, "after\n"},
		{"<a href=\"x\">link</a>", "link\n"},
		{"", ""},
		{"<unclosed", ""},
	}
	for _, tt := range tests {
		got, err := io.ReadAll(newHTMLText(strings.NewReader(tt.in)))
		if err != nil || string(got) != tt.want {
			t.Errorf("%.60q: %q (%v), want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestBase64(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{"aGVsbG8=\r\n", "hello", false},
		{"aGVs\r\nbG8", "hello", false},                 // missing padding
		{"aGVs bG8=", "hello", false},                   // folded with a space
		{"aGVsbG8=\r\n-- trailer junk", "hello", false}, // ignored after the padding
		{"aGVs!G8=", "", true},
		{"aGVsb", "", true}, // one character too many
	}
	for _, tt := range tests {
		dec, err := transferDecoder("Base64", strings.NewReader(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(dec)
		if (err != nil) != tt.bad || (!tt.bad && string(got) != tt.want) {
			t.Errorf("%q: %q, %v", tt.in, got, err)
		}
	}
	if _, err := transferDecoder("x-uuencode", strings.NewReader("")); err == nil {
		t.Error("x-uuencode accepted")
	}
}

func readTNEFSeed(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/winmail.dat")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseTNEF(t *testing.T) {
	good := readTNEFSeed(t)
	files, notes, err := parseTNEF(good)
	if err != nil || len(notes) != 0 || len(files) != 2 {
		t.Fatalf("files %v notes %q err %v", files, notes, err)
	}
	if files[0].Name != "Angebot Übersicht 2024.pdf" || files[0].MIMEType != "application/pdf" ||
		files[1].Name != "Notiz März.txt" || !bytes.HasPrefix(files[0].Data, []byte("%PDF")) {
		t.Fatalf("files %+v", files)
	}

	bad := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	corrupt := map[string][]byte{
		"empty":         nil,
		"no signature":  bad(func(b []byte) []byte { b[0] = 0; return b }),
		"truncated":     good[:len(good)-1],
		"header only":   good[:6],
		"huge length":   bad(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[6+5:], 0xFFFFFFF0); return b }),
		"bad level":     bad(func(b []byte) []byte { b[6] = 9; return b }),
		"half an attr":  good[:6+5],
		"trailing byte": append(bytes.Clone(good), 1),
	}
	for name, b := range corrupt {
		if files, _, err := parseTNEF(b); err == nil {
			t.Errorf("%s: no error, files %v", name, files)
		}
	}
}

// An attachment whose MAPI properties are damaged keeps its data and its title.
func TestParseTNEFDamagedProps(t *testing.T) {
	b := binary.LittleEndian.AppendUint32(nil, tnefSignature)
	b = binary.LittleEndian.AppendUint16(b, 0)
	attr := func(id uint32, data []byte) {
		b = append(b, lvlAttachment)
		b = binary.LittleEndian.AppendUint32(b, id)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
		b = append(b, 0, 0)
	}
	attr(0x00069002, make([]byte, 14))
	attr(0x00018010, []byte("short.txt\x00"))
	attr(0x0006800F, []byte("data"))
	attr(0x00069005, []byte{0xff, 0xff, 0xff, 0xff, 0x1f, 0x00, 0x07, 0x37, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f})
	// A second attachment without data: left out with a note.
	attr(0x00069002, make([]byte, 14))
	attr(0x00018010, []byte("embedded.msg\x00"))
	files, notes, err := parseTNEF(b)
	if err != nil || len(files) != 1 || files[0].Name != "short.txt" || string(files[0].Data) != "data" || len(notes) != 1 {
		t.Fatalf("files %+v notes %q err %v", files, notes, err)
	}
}

func FuzzTNEF(f *testing.F) {
	good := readTNEFSeed(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0x78, 0x9f, 0x3e, 0x22, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		files, _, err := parseTNEF(b)
		if err != nil && files != nil {
			t.Fatal("files with an error")
		}
		total := 0
		for _, f := range files {
			total += len(f.Data)
		}
		if total > len(b) {
			t.Fatalf("%d bytes of files from %d bytes of TNEF", total, len(b))
		}
	})
}
