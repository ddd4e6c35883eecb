package mimewalk_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
)

// got is what a test callback saw of one part.
type got struct {
	Index       int
	Path        []int
	Kind        string
	Filename    string
	Type        string
	Disposition string
	Data        []byte
	ReadErr     error
}

func (g got) String() string {
	return fmt.Sprintf("#%d %v %s %q %s %q (%d bytes %s)", g.Index, g.Path, g.Kind, g.Filename, g.Type, g.Disposition, len(g.Data), sha(g.Data))
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// collect runs Walk and reads every Body fully.
func collect(t *testing.T, r io.Reader, lim mimewalk.Limits, opt mimewalk.Options) (mimewalk.Envelope, mimewalk.Result, []got, error) {
	t.Helper()
	var parts []got
	env, res, err := mimewalk.Walk(r, lim, opt, func(p mimewalk.Part) error {
		data, err := io.ReadAll(p.Body)
		parts = append(parts, got{p.Index, p.Path, p.Kind, p.Filename, p.DeclaredType, p.Disposition, data, err})
		return err
	})
	return env, res, parts, err
}

// want describes an expected part: Data is compared by sha256 and its first bytes by Prefix.
type want struct {
	Path        []int
	Kind        string
	Filename    string
	Type        string
	Disposition string
	Data        []byte
}

func att(path []int, name, typ, disp string, data []byte) want {
	return want{path, mimewalk.KindAttachment, name, typ, disp, data}
}

func TestWalkCorpus(t *testing.T) {
	date := time.Date(2024, 3, 5, 10, 15, 0, 0, time.FixedZone("", 3600))
	tests := []struct {
		file     string
		opt      mimewalk.Options
		lim      mimewalk.Limits
		parts    []want
		problems []string // substrings, one per problem, in order
		limit    string   // LimitError.What expected, "" for none
		env      *mimewalk.Envelope
	}{
		{
			file: "nested-forward.eml",
			parts: []want{
				att([]int{1, 0, 1, 0, 1}, "deep.pdf", "application/pdf", "attachment", fakePDF("deep.pdf")),
				att([]int{1, 0, 2}, "mid.png", "image/png", "attachment", fakePNG("mid.png")),
			},
			env: &mimewalk.Envelope{MessageID: "fwd-fwd-invoice@example.com", From: "Alice Example <alice@example.com>",
				To: "ingest@example.org", Subject: "Fwd Fwd Invoice", Date: date},
		},
		{
			file: "nested-forward.eml",
			opt:  mimewalk.Options{IncludeBody: true},
			parts: []want{
				{[]int{0}, mimewalk.KindBody, "", "text/plain", "", []byte("See the forwarded mail.")},
				att([]int{1, 0, 1, 0, 1}, "deep.pdf", "application/pdf", "attachment", fakePDF("deep.pdf")),
				att([]int{1, 0, 2}, "mid.png", "image/png", "attachment", fakePNG("mid.png")),
			},
		},
		{
			file: "nested-forward.eml",
			lim:  mimewalk.Limits{MaxDepth: 3},
			// The first forwarded level is walked; the second one is too deep.
			limit: mimewalk.LimitDepth,
		},
		{
			file: "inline-image.eml",
			env:  stdEnv("Logo and photo", true),
			opt:  mimewalk.Options{IncludeBody: true},
			parts: []want{
				{[]int{0, 0, 0}, mimewalk.KindBody, "", "text/plain", "", []byte("Hello, see the logo.")},
				{[]int{0, 1}, mimewalk.KindInline, "logo.png", "image/png", "inline", fakePNG("logo.png")},
				att([]int{1}, "photo.png", "image/png", "attachment", fakePNG("photo.png")),
				att([]int{2}, "Vertrag.pdf", "application/pdf", "inline", fakePDF("Vertrag.pdf")),
			},
		},
		{
			file: "rfc2231.eml",
			env:  stdEnv("RFC 2231", true),
			parts: []want{
				att([]int{1}, "Rechnung März.pdf", "application/pdf", "attachment", fakePDF("utf8")),
				att([]int{2}, "Rechnung März 2.pdf", "application/pdf", "attachment", fakePDF("latin1")),
				att([]int{3}, "€ Beleg März.pdf", "application/pdf", "attachment", fakePDF("cp1252")),
				att([]int{4}, "Sehr langer Dateiname über.pdf", "application/pdf", "attachment", fakePDF("continued")),
				att([]int{5}, "Grüße.txt", "text/plain", "inline", fakePDF("ctname")),
				att([]int{6}, "Blätter.pdf", "application/pdf", "attachment", fakePDF("raw8bit")),
			},
		},
		{
			file: "encoded-words.eml",
			parts: []want{
				att([]int{1}, "Übersicht.pdf", "application/pdf", "", fakePDF("ew1")),
				att([]int{2}, "Angebot für Sie.pdf", "application/pdf", "attachment", fakePDF("ew2")),
				att([]int{3}, "Prüfbericht 2024.pdf", "application/pdf", "attachment", fakePDF("ew3")),
			},
			env: &mimewalk.Envelope{MessageID: "encoded.words@example.com", From: "Jürgen Müller <jm@example.com>",
				To: "Anna <anna@example.org>, bob@example.org", Cc: "Élodie <elodie@example.net>",
				Subject: "Rechnung März", Date: date},
		},
		{
			file:  "no-content-type.eml",
			env:   stdEnv("No content type", true),
			parts: []want{att([]int{1}, "data.bin", "", "attachment", fakePDF("data.bin"))},
		},
		{
			file: "octet-stream-pdf.eml",
			env:  stdEnv("Octet stream", true),
			parts: []want{
				{[]int{1}, mimewalk.KindInline, "", "application/octet-stream", "", fakePDF("octet")},
			},
		},
		{
			file: "garbage-base64.eml",
			env:  stdEnv("Garbage", true),
			parts: []want{
				att([]int{1}, "good.pdf", "application/pdf", "attachment", fakePDF("good.pdf")),
				att([]int{3}, "after.pdf", "application/pdf", "attachment", fakePDF("after.pdf")),
			},
			problems: []string{`part 2 ("bad.pdf"): skipped: the content is damaged (not base64: byte '!'`},
		},
		{file: "nesting-bomb.eml", limit: mimewalk.LimitDepth},
		{
			file:  "nesting-bomb.eml",
			lim:   mimewalk.Limits{MaxDepth: 200},
			parts: []want{att(slices.Repeat([]int{0}, 100), "bottom.pdf", "application/pdf", "attachment", fakePDF("bottom.pdf"))},
		},
		{
			file: "no-attachment.eml",
			env: &mimewalk.Envelope{MessageID: "just.text@example.com", From: "Alice Example <alice@example.com>",
				To: "ingest@example.org", Subject: "Just text", Date: date},
		},
		{
			file:  "no-attachment.eml",
			opt:   mimewalk.Options{IncludeBody: true},
			parts: []want{{[]int{0}, mimewalk.KindBody, "", "text/plain", "", []byte("Only words, no files.")}},
		},
		{
			file: "winmail.eml",
			env:  stdEnv("Outlook", true),
			parts: []want{
				{[]int{1, 0}, mimewalk.KindTNEF, "Angebot Übersicht 2024.pdf", "application/pdf", "", fakePDF("tnef1")},
				{[]int{1, 1}, mimewalk.KindTNEF, "Notiz März.txt", "", "", []byte("Notizen aus dem M\xe4rz\r\n")},
			},
		},
		{
			file:     "winmail-corrupt.eml",
			env:      stdEnv("Outlook broken", true),
			parts:    []want{att([]int{1}, "winmail.dat", "application/ms-tnef", "attachment", winmailCorruptDat())},
			problems: []string{`part 1 ("winmail.dat"): not unpacked (attribute at byte`},
		},
		{
			file:  "malformed-disposition.eml",
			env:   stdEnv("Malformed disposition", true),
			parts: []want{att([]int{1}, "my file.pdf", "text/plain", "attachment", []byte("not really a pdf"))},
		},
		{
			file:     "x-uuencode.eml",
			env:      stdEnv("Uuencode", true),
			parts:    []want{att([]int{2}, "ok.pdf", "application/pdf", "attachment", fakePDF("ok.pdf"))},
			problems: []string{`part 1 ("old.pdf"): skipped: unknown transfer encoding "x-uuencode"`},
		},
		{
			file:  "html-body.eml",
			env:   stdEnv("HTML only", false),
			opt:   mimewalk.Options{IncludeBody: true},
			parts: []want{{nil, mimewalk.KindBody, "", "text/html", "", []byte("Grüße & Hallo\n\nZeile 2\n")}},
		},
		{file: "html-body.eml"},
		{
			file:  "single-part.eml",
			env:   stdEnv("Scan", false),
			parts: []want{att(nil, "scan.pdf", "application/pdf", "", fakePDF("scan.pdf"))},
		},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/body=%v/%+v", tt.file, tt.opt.IncludeBody, tt.lim)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			env, res, parts, err := collect(t, bytes.NewReader(raw), tt.lim, tt.opt)
			checkLimit(t, err, tt.limit)
			if tt.limit != "" {
				return
			}
			if res.Parts != len(parts) {
				t.Errorf("Result.Parts = %d, fn called %d times", res.Parts, len(parts))
			}
			if len(parts) != len(tt.parts) {
				t.Fatalf("got %d parts, want %d:\n%s\nproblems: %q", len(parts), len(tt.parts), gotList(parts), res.Problems)
			}
			for i, w := range tt.parts {
				g := parts[i]
				if g.Index != i+1 || !slices.Equal(g.Path, w.Path) || g.Kind != w.Kind || g.Filename != w.Filename ||
					g.Type != w.Type || g.Disposition != w.Disposition || g.ReadErr != nil {
					t.Errorf("part %d:\n got  %v (read error %v)\n want %v %s %q %s %q", i, g, g.ReadErr, w.Path, w.Kind, w.Filename, w.Type, w.Disposition)
				}
				if !bytes.HasPrefix(g.Data, w.Data[:min(8, len(w.Data))]) || sha(g.Data) != sha(w.Data) {
					t.Errorf("part %d (%s): body %q…, want %q…", i, w.Filename, g.Data[:min(40, len(g.Data))], w.Data[:min(40, len(w.Data))])
				}
			}
			if len(res.Problems) != len(tt.problems) {
				t.Fatalf("problems %q, want %d like %q", res.Problems, len(tt.problems), tt.problems)
			}
			for i, p := range tt.problems {
				if !strings.Contains(res.Problems[i], p) {
					t.Errorf("problem %q does not contain %q", res.Problems[i], p)
				}
			}
			if tt.env != nil {
				if env.MessageID != tt.env.MessageID || env.From != tt.env.From || env.To != tt.env.To ||
					env.Cc != tt.env.Cc || env.Subject != tt.env.Subject || !env.Date.Equal(tt.env.Date) {
					t.Errorf("envelope\n got  %+v\n want %+v", env, *tt.env)
				}
			}
		})
	}
}

// stdEnv is the envelope of the corpus mails built with stdHeader (and mixed, which adds a
// Message-ID made from the subject).
func stdEnv(subject string, withID bool) *mimewalk.Envelope {
	env := &mimewalk.Envelope{From: "Alice Example <alice@example.com>", To: "ingest@example.org", Subject: subject,
		Date: time.Date(2024, 3, 5, 10, 15, 0, 0, time.FixedZone("", 3600))}
	if withID {
		env.MessageID = strings.ReplaceAll(strings.ToLower(subject), " ", "-") + "@example.com"
	}
	return env
}

func gotList(parts []got) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}

func checkLimit(t *testing.T, err error, what string) {
	t.Helper()
	var le *mimewalk.LimitError
	switch {
	case what == "" && err != nil:
		t.Fatalf("Walk: %v", err)
	case what != "" && !errors.As(err, &le):
		t.Fatalf("Walk returned %v, want a *LimitError %s", err, what)
	case what != "" && le.What != what:
		t.Fatalf("LimitError %q (%v), want %s", le.What, le, what)
	}
}

func TestFnErrorStopsTheWalk(t *testing.T) {
	raw, _ := os.ReadFile("testdata/rfc2231.eml")
	stop := errors.New("storage is full")
	calls := 0
	_, res, err := mimewalk.Walk(bytes.NewReader(raw), mimewalk.Limits{}, mimewalk.Options{}, func(p mimewalk.Part) error {
		calls++
		if p.Index == 2 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 || res.Parts != 2 {
		t.Fatalf("err %v after %d calls (Parts %d), want the callback's error after 2", err, calls, res.Parts)
	}
}

func TestBodyIsInvalidAfterFn(t *testing.T) {
	raw, _ := os.ReadFile("testdata/single-part.eml")
	var kept io.Reader
	_, _, err := mimewalk.Walk(bytes.NewReader(raw), mimewalk.Limits{}, mimewalk.Options{}, func(p mimewalk.Part) error {
		kept = p.Body
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := kept.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Fatalf("Read after fn returned: %d, %v; want an error", n, err)
	}
}

// An unread or half-read Body is skipped without harm to the parts after it.
func TestUnreadBodies(t *testing.T) {
	raw, _ := os.ReadFile("testdata/rfc2231.eml")
	var names []string
	_, res, err := mimewalk.Walk(bytes.NewReader(raw), mimewalk.Limits{}, mimewalk.Options{}, func(p mimewalk.Part) error {
		names = append(names, p.Filename)
		if p.Index%2 == 0 {
			_, err := p.Body.Read(make([]byte, 5))
			return err
		}
		return nil
	})
	if err != nil || len(names) != 6 || len(res.Problems) != 0 {
		t.Fatalf("err %v, parts %q, problems %q", err, names, res.Problems)
	}
}

// Damage beyond the part's first 32 KiB reaches fn through Body.Read; returning that error goes
// on with the walk and records a problem, as does swallowing it.
func TestLateDamage(t *testing.T) {
	big := bytes.Repeat([]byte("%PDF-1.4 late damage "), 4000) // 84 KB
	enc := b64(big)
	enc = enc[:len(enc)-200] + "#" + enc[len(enc)-200:]
	msg := mixed("Late damage", "ld",
		crlf("Content-Type: application/pdf; name=late.pdf", "Content-Transfer-Encoding: base64", "")+enc,
		pdfAttachment("next.pdf"))
	for _, swallow := range []bool{false, true} {
		var readErrs []error
		_, res, err := mimewalk.Walk(bytes.NewReader(msg), mimewalk.Limits{}, mimewalk.Options{}, func(p mimewalk.Part) error {
			_, err := io.Copy(io.Discard, p.Body)
			readErrs = append(readErrs, err)
			if swallow {
				return nil
			}
			return fmt.Errorf("storing %s: %w", p.Filename, err)
		})
		if !swallow {
			// The second part read fine, so fn wrapped a nil error: that is an error too.
			if err == nil || !strings.Contains(err.Error(), "storing next.pdf") {
				t.Fatalf("err %v", err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if len(readErrs) != 2 || !errors.Is(readErrs[0], mimewalk.ErrBrokenPart) || readErrs[1] != nil {
			t.Fatalf("read errors %v", readErrs)
		}
		if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "damaged") {
			t.Fatalf("problems %q", res.Problems)
		}
	}
}

// A reader that fails is fatal, unlike damage inside the mail.
func TestSourceErrorIsFatal(t *testing.T) {
	raw, _ := os.ReadFile("testdata/garbage-base64.eml")
	broken := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(raw[:len(raw)/2]), iotestErrReader{broken})
	_, _, _, err := collect(t, r, mimewalk.Limits{}, mimewalk.Options{})
	if !errors.Is(err, broken) {
		t.Fatalf("err %v, want the reader's error", err)
	}
}

// A mail without its closing boundary still hands on its last part, with a problem; a reader
// that fails with io.ErrUnexpectedEOF at the same place is fatal.
func TestUnterminatedMultipart(t *testing.T) {
	raw := mixed("Unterminated", "u", textPart("hi"), pdfAttachment("last.pdf"))
	raw = raw[:len(raw)-len("--u--\r\n")]
	_, res, parts, err := collect(t, bytes.NewReader(raw), mimewalk.Limits{}, mimewalk.Options{})
	if err != nil || len(parts) != 1 || !bytes.Equal(parts[0].Data, fakePDF("last.pdf")) {
		t.Fatalf("err %v, parts %v", err, parts)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "without a closing boundary") {
		t.Fatalf("problems %q", res.Problems)
	}

	r := io.MultiReader(bytes.NewReader(raw), iotestErrReader{io.ErrUnexpectedEOF})
	_, _, _, err = collect(t, r, mimewalk.Limits{}, mimewalk.Options{})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want the reader's io.ErrUnexpectedEOF", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestManyParts(t *testing.T) {
	var b strings.Builder
	b.WriteString(stdHeader + "Subject: many\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n")
	for i := range 10000 {
		fmt.Fprintf(&b, "--m\r\nContent-Type: application/octet-stream\r\n\r\n%d\r\n", i)
	}
	b.WriteString("--m--\r\n")
	msg := b.String()

	_, _, parts, err := collect(t, strings.NewReader(msg), mimewalk.Limits{}, mimewalk.Options{})
	checkLimit(t, err, mimewalk.LimitParts)
	// The root counts as a part: 999 leaves fit in the default 1000.
	if len(parts) != mimewalk.DefaultMaxParts-1 {
		t.Errorf("%d parts reported before the limit", len(parts))
	}

	n := 0
	_, res, err := mimewalk.Walk(strings.NewReader(msg), mimewalk.Limits{MaxParts: 20000}, mimewalk.Options{}, func(p mimewalk.Part) error {
		data, err := io.ReadAll(p.Body)
		if string(data) != fmt.Sprint(n) || p.Index != n+1 {
			t.Fatalf("part %d: %q", p.Index, data)
		}
		n++
		return err
	})
	if err != nil || n != 10000 || res.Parts != 10000 {
		t.Fatalf("err %v, %d parts", err, n)
	}
}

func TestEmptyAndHeaderless(t *testing.T) {
	for _, in := range []string{"", "\r\n", "not a header line\r\n\r\nbody"} {
		_, res, parts, err := collect(t, strings.NewReader(in), mimewalk.Limits{}, mimewalk.Options{})
		if err != nil || len(parts) != 0 {
			t.Errorf("%q: err %v, parts %v, problems %q", in, err, parts, res.Problems)
		}
	}
}
