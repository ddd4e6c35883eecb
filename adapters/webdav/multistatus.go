package webdav

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/intake"
)

// entry is one resource in a listing.
type entry struct {
	rel          string // below the watched folder: decoded, "/"-separated, no leading/trailing slash
	dir          bool
	etag         string // as the server sent it, quotes included; "" when it gave none
	size         int64  // -1 when the server did not say
	lastModified time.Time
	contentType  string
	fileID       string // oc:fileid (Nextcloud, ownCloud): stays the same across renames
}

// listing is one collection's PROPFIND answer.
type listing struct {
	self     *entry  // the collection itself, when the server listed it (most do)
	children []entry // its direct members
}

// maxEntryBytes bounds a single <response> of a listing. A real one is well under a kilobyte; the
// bound keeps one endless element (a gigantic href, an entity bomb, deep nesting) from growing
// the decoder's buffers up to the whole listing limit.
const maxEntryBytes = 256 << 10

// listingTooLargeError says a listing went past MaxListingBytes.
type listingTooLargeError struct{ limit int64 }

func (e *listingTooLargeError) Error() string {
	return fmt.Sprintf("the listing is larger than max_listing_bytes (%s); raise it for very large folders", intake.HumanBytes(e.limit))
}

var errEntryTooLarge = fmt.Errorf("one entry of the listing is larger than %s, which no WebDAV server sends", intake.HumanBytes(maxEntryBytes))

// propfindBody asks for exactly what the watcher uses. oc:fileid is Nextcloud's and ownCloud's
// stable file id; other servers answer it with a 404 propstat, which is fine.
const propfindBody = `<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>` +
	`<d:getetag/><d:getcontentlength/><d:getlastmodified/><d:resourcetype/><d:getcontenttype/><oc:fileid/>` +
	`</d:prop></d:propfind>`

const nsDAV = "DAV:"

type xmlResponse struct {
	Hrefs    []string      `xml:"DAV: href"`
	Status   string        `xml:"DAV: status"`
	Propstat []xmlPropstat `xml:"DAV: propstat"`
}

type xmlPropstat struct {
	Status string  `xml:"DAV: status"`
	Prop   xmlProp `xml:"DAV: prop"`
}

type xmlProp struct {
	ETag          *string          `xml:"DAV: getetag"`
	ContentLength *string          `xml:"DAV: getcontentlength"`
	LastModified  *string          `xml:"DAV: getlastmodified"`
	ContentType   *string          `xml:"DAV: getcontenttype"`
	ResourceType  *xmlResourceType `xml:"DAV: resourcetype"`
	FileID        *string          `xml:"http://owncloud.org/ns fileid"`
}

type xmlResourceType struct {
	Collection *struct{} `xml:"DAV: collection"`
}

// parseMultistatus reads a PROPFIND answer for the collection listedRel below root. It reads at
// most maxBytes (then fails with *listingTooLargeError) and keeps at most one entry's worth of
// XML in the decoder at a time.
func parseMultistatus(r io.Reader, root *url.URL, listedRel string, maxBytes int64) (listing, error) {
	br := &boundedReader{r: bufio.NewReaderSize(r, 32<<10), limit: maxBytes, window: maxEntryBytes}
	dec := xml.NewDecoder(br)
	dec.Strict = true
	// No charset conversion: a listing that is not UTF-8 is refused rather than guessed at.
	base := *root
	base.Path = root.Path + listedRel
	if listedRel != "" {
		base.Path += "/"
	}
	var out listing
	seen := map[string]bool{}

	inRoot := false
	for {
		br.mark()
		tok, err := dec.Token()
		if err != nil {
			return listing{}, decodeError(err, inRoot)
		}
		switch t := tok.(type) {
		case xml.Directive:
			// <!DOCTYPE …>: WebDAV answers never carry one; it is how entity bombs start.
			return listing{}, errors.New("the listing declares a DTD (<!DOCTYPE …>), which WebDAV servers never send; refusing it")
		case xml.StartElement:
			if !inRoot {
				if t.Name.Space != nsDAV || t.Name.Local != "multistatus" {
					return listing{}, fmt.Errorf("the answer is not a WebDAV multistatus: its root element is <%s> in namespace %q", t.Name.Local, t.Name.Space)
				}
				inRoot = true
				continue
			}
			if t.Name.Space != nsDAV || t.Name.Local != "response" {
				// Something else a server added (responsedescription, sync-token): not ours.
				if err := dec.Skip(); err != nil {
					return listing{}, decodeError(err, inRoot)
				}
				continue
			}
			var x xmlResponse
			if err := dec.DecodeElement(&x, &t); err != nil {
				return listing{}, decodeError(err, inRoot)
			}
			e, ok, err := toEntry(x, root, &base)
			if err != nil {
				return listing{}, err
			}
			if !ok || seen[e.rel] {
				continue
			}
			seen[e.rel] = true
			switch {
			case e.rel == listedRel:
				e.dir = true
				self := e
				out.self = &self
			case parentRel(e.rel) == listedRel:
				out.children = append(out.children, e)
				// Anything else (a grandchild from a server that ignored Depth: 1, a sibling) is
				// not part of this collection's listing; it is listed with its own collection.
			}
		case xml.EndElement:
			// The decoder checks nesting, so this is </multistatus>: the listing is complete.
			return out, nil
		}
	}
}

// decodeError words a decoder failure for people.
func decodeError(err error, started bool) error {
	var tooLarge *listingTooLargeError
	if errors.As(err, &tooLarge) || errors.Is(err, errEntryTooLarge) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected EOF") {
		if !started {
			return errors.New("the answer is empty, not a WebDAV multistatus")
		}
		return errors.New("the listing ends in the middle (truncated: the connection broke or the server failed while answering)")
	}
	var syntax *xml.SyntaxError
	if errors.As(err, &syntax) || strings.HasPrefix(err.Error(), "xml:") {
		return fmt.Errorf("the listing is not well-formed XML: %w", err)
	}
	return fmt.Errorf("the listing could not be read to its end: %w", err)
}

// toEntry checks one <response> and turns it into an entry. ok is false for a member the server
// reports with an error status (a file it cannot stat): it is not part of the listing.
func toEntry(x xmlResponse, root, base *url.URL) (e entry, ok bool, err error) {
	if len(x.Hrefs) == 0 {
		return entry{}, false, errors.New("an entry of the listing has no href")
	}
	href := x.Hrefs[0]
	rel, err := hrefRel(href, root, base)
	if err != nil {
		return entry{}, false, err
	}
	e = entry{rel: rel, size: -1}
	if len(x.Propstat) == 0 {
		if strings.TrimSpace(x.Status) == "" {
			return entry{}, false, fmt.Errorf("the entry for %q has neither a propstat nor a status", href)
		}
		code, err := parseStatus(x.Status)
		if err != nil {
			return entry{}, false, fmt.Errorf("the entry for %q: %v", href, err)
		}
		if code/100 != 2 {
			return entry{}, false, nil
		}
	}
	for _, ps := range x.Propstat {
		code, err := parseStatus(ps.Status)
		if err != nil {
			return entry{}, false, fmt.Errorf("the entry for %q: %v", href, err)
		}
		if code/100 != 2 {
			continue // properties the server does not have (404) or will not tell (403)
		}
		p := ps.Prop
		if p.ResourceType != nil && p.ResourceType.Collection != nil {
			e.dir = true
		}
		if p.ETag != nil {
			e.etag = strings.TrimSpace(*p.ETag)
		}
		if p.ContentLength != nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(*p.ContentLength), 10, 64); err == nil && n >= 0 {
				e.size = n
			}
		}
		if p.LastModified != nil {
			e.lastModified = parseHTTPTime(*p.LastModified)
		}
		if p.ContentType != nil {
			e.contentType = strings.TrimSpace(*p.ContentType)
		}
		if p.FileID != nil {
			e.fileID = strings.TrimSpace(*p.FileID)
		}
	}
	// A server that did not say what it is still marks collections with a trailing slash.
	if strings.HasSuffix(strings.TrimSpace(href), "/") {
		e.dir = true
	}
	return e, true, nil
}

// parseStatus reads "HTTP/1.1 200 OK" (the reason phrase is optional).
func parseStatus(s string) (int, error) {
	f := strings.Fields(s)
	if len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
		if code, err := strconv.Atoi(f[1]); err == nil && code >= 100 && code <= 599 {
			return code, nil
		}
	}
	return 0, fmt.Errorf("unreadable status line %q", truncate(s, 80))
}

// parseHTTPTime reads getlastmodified: RFC 1123 as RFC 4918 asks, the other HTTP date forms, or
// RFC 3339 from servers that send ISO dates. Anything else counts as not given.
func parseHTTPTime(s string) time.Time {
	s = strings.TrimSpace(s)
	if t, err := http.ParseTime(s); err == nil {
		return t
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t
	}
	return time.Time{}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// boundedReader feeds the XML decoder byte by byte (it implements io.ByteReader, so the decoder
// adds no buffer of its own) and fails once the whole listing passes limit or the bytes since
// the last mark pass window.
type boundedReader struct {
	r      *bufio.Reader
	n      int64
	limit  int64
	marked int64
	window int64
}

func (b *boundedReader) mark() { b.marked = b.n }

func (b *boundedReader) ReadByte() (byte, error) {
	if b.n >= b.limit {
		return 0, &listingTooLargeError{limit: b.limit}
	}
	if b.n-b.marked >= b.window {
		return 0, errEntryTooLarge
	}
	c, err := b.r.ReadByte()
	if err == nil {
		b.n++
	}
	return c, err
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c, err := b.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	return 1, nil
}
