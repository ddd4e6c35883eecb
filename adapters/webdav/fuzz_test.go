package webdav

import (
	"strings"
	"testing"
)

// FuzzParseMultistatus feeds arbitrary answers to the listing parser. Whatever arrives, it
// returns an error or a listing whose every entry is a direct member of the listed collection,
// with a clean relative path: never a panic, never a path that climbs out.
func FuzzParseMultistatus(f *testing.F) {
	f.Add(nextcloudListing, "")
	f.Add(ms(resp("/dav/inbox/", dirProps), resp("/dav/inbox/a%20b.pdf", fileProps), resp("/dav/inbox/sub/", dirProps)), "")
	f.Add(ms(resp("/dav/inbox/sub/", dirProps), resp("/dav/inbox/sub/x%23y.pdf", fileProps)), "sub")
	f.Add(ms(resp("http://other/dav/inbox/%C3%BC.pdf", fileProps), resp("rel.pdf", fileProps)), "")
	f.Add(ms(`<d:response><d:href>/dav/inbox/b.pdf</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>`), "")
	f.Add(ms(resp("/dav/inbox/../x", fileProps)), "")
	f.Add(billionLaughs, "")
	f.Add(`<d:multistatus xmlns:d="DAV:"><d:response><d:href>/dav/inbox/a`, "")
	root := mustURL("https://cloud.example.com/dav/inbox/")
	f.Fuzz(func(t *testing.T, body, listed string) {
		// Only plausible collection paths are listed by the watcher.
		if strings.Contains(listed, "..") || strings.HasPrefix(listed, "/") || strings.HasSuffix(listed, "/") || strings.Contains(listed, "//") {
			return
		}
		l, err := parseMultistatus(strings.NewReader(body), root, listed, 1<<20)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if l.self != nil && l.self.rel != listed {
			t.Fatalf("self %q is not the listed collection %q", l.self.rel, listed)
		}
		for _, e := range l.children {
			if e.rel == "" || strings.HasPrefix(e.rel, "/") || strings.HasSuffix(e.rel, "/") {
				t.Fatalf("entry path %q is not clean", e.rel)
			}
			for _, seg := range strings.Split(e.rel, "/") {
				if seg == ".." || seg == "." || seg == "" {
					t.Fatalf("entry path %q has segment %q", e.rel, seg)
				}
			}
			if parentRel(e.rel) != listed {
				t.Fatalf("entry %q is not a member of %q", e.rel, listed)
			}
			if e.size < -1 {
				t.Fatalf("size %d", e.size)
			}
			// The URL built for it stays on the configured server and below the folder.
			u := mustURL(resourceURL(root, e.rel, e.dir))
			if u.Host != root.Host || !strings.HasPrefix(u.Path, root.Path) {
				t.Fatalf("entry %q maps to %s", e.rel, u)
			}
		}
	})
}
