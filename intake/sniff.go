package intake

import (
	"bytes"
	"net/http"
	"strings"
	"unicode/utf8"
)

// SniffLen is how many leading bytes decide a document's type.
const SniffLen = 512

// Kind is a document type ingest accepts.
type Kind struct {
	ContentType string
	Ext         string // for generated file names
	Name        string // for people
}

// The accepted types: what document-AI vendors take.
var (
	PDF  = Kind{"application/pdf", ".pdf", "PDF"}
	PNG  = Kind{"image/png", ".png", "PNG"}
	JPEG = Kind{"image/jpeg", ".jpg", "JPEG"}
	TIFF = Kind{"image/tiff", ".tif", "TIFF"}
	GIF  = Kind{"image/gif", ".gif", "GIF"}
	Text = Kind{"text/plain; charset=utf-8", ".txt", "plain UTF-8 text"}
)

// Accepted lists the accepted types in the words error messages use.
const Accepted = "PDF, PNG, JPEG, TIFF, GIF and plain UTF-8 text"

// Sniff decides the type from a document's first bytes (up to SniffLen; complete says whether
// that is the whole document). The sender's claim is never consulted: a .pdf name or an
// application/pdf header on a ZIP is still a ZIP. When ok is false, detected names what it looks like.
func Sniff(head []byte, complete bool) (k Kind, detected string, ok bool) {
	switch {
	case bytes.HasPrefix(head, []byte("%PDF-")):
		return PDF, PDF.ContentType, true
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return PNG, PNG.ContentType, true
	case bytes.HasPrefix(head, []byte("\xff\xd8\xff")):
		return JPEG, JPEG.ContentType, true
	case bytes.HasPrefix(head, []byte("II*\x00")), bytes.HasPrefix(head, []byte("MM\x00*")):
		return TIFF, TIFF.ContentType, true
	case bytes.HasPrefix(head, []byte("GIF87a")), bytes.HasPrefix(head, []byte("GIF89a")):
		return GIF, GIF.ContentType, true
	}
	detected = http.DetectContentType(head)
	// Markup is text too, but no vendor reads HTML or XML as a document: say what it is.
	if strings.HasPrefix(detected, "text/plain") && isUTF8Text(head, complete) {
		return Text, Text.ContentType, true
	}
	if strings.HasPrefix(detected, "text/plain") {
		detected = "binary data (not UTF-8 text)"
		if bytes.HasPrefix(head, []byte{0xfe, 0xff}) || bytes.HasPrefix(head, []byte{0xff, 0xfe}) {
			detected = "UTF-16 text"
		}
	}
	return Kind{}, detected, false
}

// isUTF8Text: valid UTF-8 (a rune cut off by the sniff window is fine) without control characters
// other than tab, newlines, form feed and escape.
func isUTF8Text(b []byte, complete bool) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return !complete && !utf8.FullRune(b[i:])
		}
		if isBinaryRune(r) {
			return false
		}
		i += size
	}
	return true
}

func isBinaryRune(r rune) bool {
	return r < 0x20 && r != '\t' && r != '\n' && r != '\r' && r != '\f' && r != 0x1b || r == 0x7f
}
