package laigosim

// pdfPages counts a PDF's page objects as its bytes stream by: the matches of the regular
// expression `/Type\s*/Page\b` ("/Type /Page", never "/Type /Pages"), without holding the file.
// Matches cannot overlap (each starts with "/Type" and holds no other), so counting where one
// ends is counting them all.
type pdfPages struct {
	count int
	state int // how far into a match the last byte took us (the constants below)
}

const (
	// 0..5: that many bytes of "/Type" matched.
	inSpace   = 5  // "/Type" and any whitespace after it
	inPage    = 6  // inPage+k: "/Type", whitespace, and k bytes of "/Page" (1 ≤ k ≤ 4)
	afterPage = 11 // the whole "/Type…/Page": a match unless a word character follows
)

func (pp *pdfPages) Write(p []byte) (int, error) {
	for _, c := range p {
		pp.state = pp.next(c)
	}
	return len(p), nil
}

// next is the state after byte c.
func (pp *pdfPages) next(c byte) int {
	const typ, page = "/Type", "/Page"
	s := pp.state
	switch {
	case s < inSpace && c == typ[s]:
		return s + 1
	case s == inSpace && isSpace(c):
		return inSpace
	case s == inSpace && c == '/':
		return inPage + 1
	case s > inPage && s < afterPage && c == page[s-inPage]:
		return s + 1
	case s == inPage+1 && c == 'T':
		return 2 // "/" then "T": a new "/Type" may be starting
	case s == afterPage && !isWord(c):
		pp.count++ // \b: the match ends here
	}
	// No match goes on through c; only a '/' can start the next one.
	if c == '/' {
		return 1
	}
	return 0
}

// Count is the number of page objects, a match running to the end of the file included.
func (pp *pdfPages) Count() int {
	if pp.state == afterPage {
		return pp.count + 1
	}
	return pp.count
}

// isSpace is RE2's \s.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' }

// isWord is RE2's \w, which \b looks at.
func isWord(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}
