package webdav

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// hrefRel turns an href from a listing into the path of the resource relative to the watched
// folder root (decoded, "/"-separated, no leading or trailing slash; "" is root itself). base is
// the URL of the collection that was listed, against which relative hrefs resolve. It tolerates
// what real servers send (absolute URLs or absolute paths, a host that differs behind a proxy,
// unescaped spaces, '#', '%' or non-ASCII) and refuses what no honest server sends: ".." segments
// and paths outside root.
func hrefRel(raw string, root, base *url.URL) (rel string, err error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", fmt.Errorf("an entry has an empty href")
	}
	u, err := url.Parse(escapeStray(raw))
	if err != nil {
		return "", fmt.Errorf("href %q is not a URL: %v", raw, err)
	}
	p := u.Path
	if u.Scheme == "" && u.Host == "" && !strings.HasPrefix(p, "/") {
		p = base.Path + p
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("href %q contains a \"..\" segment", raw)
		}
	}
	clean := path.Clean("/" + p)
	rootPath := path.Clean("/" + root.Path)
	switch {
	case clean == rootPath:
		return "", nil
	case rootPath == "/":
		return clean[1:], nil
	case strings.HasPrefix(clean, rootPath+"/"):
		return clean[len(rootPath)+1:], nil
	}
	return "", fmt.Errorf("href %q is outside the watched folder %s (a proxy rewriting paths?)", raw, rootPath+"/")
}

// escapeStray percent-encodes what should have been encoded in an href but sometimes is not: a
// '#' or '?' that is part of a name, a '%' that does not start an escape, spaces, control and
// non-ASCII bytes. Correct escapes are left alone, so decoding gives the server's name back.
func escapeStray(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(c)
		case c == '%' || c == '#' || c == '?' || c == ' ' || c < 0x20 || c >= 0x7f:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// resourceURL is the URL of rel below root, each segment escaped by us: requests never go to a
// host or path a listing names, only to the configured one.
func resourceURL(root *url.URL, rel string, dir bool) string {
	u := *root
	var b strings.Builder
	b.WriteString(root.EscapedPath())
	if rel != "" {
		for i, seg := range strings.Split(rel, "/") {
			if i > 0 {
				b.WriteByte('/')
			}
			b.WriteString(url.PathEscape(seg))
		}
		if dir {
			b.WriteByte('/')
		}
	}
	u.RawPath = b.String()
	u.Path, _ = url.PathUnescape(u.RawPath)
	return u.String()
}

// parentRel is the folder of rel ("" for a top-level entry).
func parentRel(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

// joinRel joins relative paths, ignoring empty ones.
func joinRel(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "/")
}
