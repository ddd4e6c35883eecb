package webdav

import (
	"errors"
	"path"
	"strings"
)

// validGlob reports a pattern path.Match would refuse, so that a typo fails at start, not
// silently at every file.
func validGlob(p string) error {
	if p == "" {
		return errors.New("empty pattern")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "**" {
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return err
		}
	}
	return nil
}

// matchGlob matches rel (a "/"-separated path below the watched folder) against pattern. A
// pattern without "/" is matched against the last element only, as people expect "*.pdf" to mean
// any PDF at any depth; otherwise segment by segment, "**" standing for any number of folders.
func matchGlob(pattern, rel string) bool {
	if !strings.Contains(pattern, "/") {
		ok, _ := path.Match(pattern, path.Base(rel))
		return ok
	}
	return matchSegments(strings.Split(pattern, "/"), strings.Split(rel, "/"))
}

func matchSegments(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegments(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

func matchAny(patterns []string, rel string) bool {
	for _, p := range patterns {
		if matchGlob(p, rel) {
			return true
		}
	}
	return false
}

// filter decides which entries of a listing the watcher cares about.
type filter struct {
	include, exclude, skip []string
	recursive              bool
	// private are the watcher's own subfolders (MoveTo, MoveFailed): never listed, never taken.
	private []string
}

// wantFile says whether a file is ever a candidate.
func (f filter) wantFile(rel string) bool {
	base := path.Base(rel)
	if matchAny(f.skip, base) || f.isPrivate(rel) || matchAny(f.exclude, rel) {
		return false
	}
	return len(f.include) == 0 || matchAny(f.include, rel)
}

// enterDir says whether a subfolder is walked.
func (f filter) enterDir(rel string) bool {
	return f.recursive && !f.isPrivate(rel) && !matchAny(f.skip, path.Base(rel)) && !matchAny(f.exclude, rel)
}

func (f filter) isPrivate(rel string) bool {
	for _, p := range f.private {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}
