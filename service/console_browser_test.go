package service_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/ingest-dev/ingest"
	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/service"
)

// browser drives a headless Chromium against a running service's console. Each step has its own
// deadline; a failing step leaves a screenshot under the test's temporary directory.
type browser struct {
	t     *testing.T
	ctx   context.Context // the tab; started once without a deadline (a deadline there would end the browser)
	base  string
	shots string
	n     int
}

// newBrowser starts Chromium, or skips the test loudly when there is none — unless
// INGEST_REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("INGEST_REQUIRE_BROWSER") == "1" {
			t.Fatal("INGEST_REQUIRE_BROWSER=1 but there is no chromium on PATH (apt-get install chromium)")
		}
		t.Skip("SKIPPED: the console's browser test needs Debian's chromium (apt-get install chromium); " +
			"set INGEST_REQUIRE_BROWSER=1 to make its absence a failure")
	}
	// The whole browser lives at most this long: a hung Chromium ends with the test, not never.
	life, stopLife := context.WithTimeout(context.Background(), 4*time.Minute)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	alloc, stopAlloc := chromedp.NewExecAllocator(life, opts...)
	ctx, stopTab := chromedp.NewContext(alloc)
	t.Cleanup(func() { stopTab(); stopAlloc(); stopLife() })
	// Start the browser with no step deadline of its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	// Screenshots go under the test's temporary directory, or to $INGEST_BROWSER_SHOTS to be kept.
	shots := os.Getenv("INGEST_BROWSER_SHOTS")
	if shots == "" {
		shots = filepath.Join(t.TempDir(), "screenshots")
	}
	b := &browser{t: t, ctx: ctx, base: base, shots: shots}
	if err := os.MkdirAll(b.shots, 0o750); err != nil {
		t.Fatal(err)
	}
	return b
}

// step runs actions within d; on failure it takes a screenshot and fails the test.
func (b *browser) step(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		shot := b.screenshot("failed-" + what)
		b.t.Fatalf("browser: %s: %v (screenshot %s)", what, err, shot)
	}
}

// screenshot saves the page as it is now and returns the file.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	b.n++
	file := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, name)))
	if err := os.WriteFile(file, buf, 0o600); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	return file
}

// open loads a console path and waits for the page's body.
func (b *browser) open(path string) {
	b.t.Helper()
	b.step("open "+path, 20*time.Second, chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// signIn signs in with key through the sign-in form.
func (b *browser) signIn(key string) {
	b.t.Helper()
	b.open("/ui/login")
	b.step("type the key", 20*time.Second, chromedp.WaitVisible(chromedp.CSS("#key")), chromedp.SendKeys(chromedp.CSS("#key"), key))
	b.submit("sign in", "#signin")
	b.step("see the console", 20*time.Second, chromedp.WaitVisible(chromedp.CSS("header nav")))
}

// waitLive waits until the page follows the event stream: from then on it misses no event.
func (b *browser) waitLive() {
	b.t.Helper()
	b.waitFor("the page to follow the event stream", 20*time.Second, `document.querySelector('#live[data-state="open"]') !== null`)
}

// waitText waits until the element sel exists and its text contains text.
func (b *browser) waitText(sel, text string, d time.Duration) {
	b.t.Helper()
	b.waitFor(fmt.Sprintf("%q in %s", text, sel), d,
		fmt.Sprintf(`(function(){var e=document.querySelector(%s);return e!==null&&e.textContent.indexOf(%s)>=0})()`,
			strconv.Quote(sel), strconv.Quote(text)))
}

// waitFor waits until a JavaScript condition holds (the browser polls it; no sleeps here). A
// page that navigates meanwhile (a form posted) ends a poll; it is polled again on the new page.
func (b *browser) waitFor(what string, d time.Duration, cond string) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	b.step("wait for "+what, d, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		for {
			_, err := chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond),
				chromedp.WithPollingTimeout(time.Until(deadline)))(ctx, t)
			if err == nil || ctx.Err() != nil || time.Now().After(deadline) ||
				!strings.Contains(err.Error(), "navigated") && !strings.Contains(err.Error(), "Not attached") &&
					!strings.Contains(err.Error(), "context") {
				return chromedp.Void{}, err
			}
		}
	})
}

// submit clicks sel and waits for the page it loads.
func (b *browser) submit(what, sel string) {
	b.t.Helper()
	b.step(what, 20*time.Second, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))(ctx, t)
		return chromedp.Void{}, err
	})
}

// text returns the text of the element sel. It is read in one script, not by node: the page's
// live updates replace its regions, and a node looked up first may be gone when its text is
// asked for ("No node with given id found").
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(
		`(function(){var e=document.querySelector(%s);if(e===null){throw new Error("no element "+%s)};return e.innerText})()`,
		strconv.Quote(sel), strconv.Quote(sel))))
	if err != nil {
		b.t.Fatalf("text of %s: %v (screenshot %s)", sel, err, b.screenshot("failed-text"))
	}
	return s
}

// consoleService runs the default configuration (every vendor in sandbox) with quick polling.
func consoleService(t *testing.T) *service.Service {
	t.Helper()
	cfg, err := config.Parse(ingest.DefaultConfigYAML(), "config.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	test := testConfig(t)
	cfg.DataDir, cfg.HTTP.Listen, cfg.NATS.Embedded.Listen, cfg.HTTP.APIKeys = test.DataDir, test.HTTP.Listen, test.NATS.Embedded.Listen, test.HTTP.APIKeys
	vendorsYAML(t, &cfg, "  gini: {sandbox_pending_polls: 2, poll: {initial: 200ms, max: 200ms}}\n")
	return start(t, cfg)
}

// A person signs in, watches an uploaded document reach "completed" on the documents page
// without reloading it, and opens it to see the fields the sandbox vendor extracted.
//
// Further scenarios (retrying a failed document: open its page, b.submit("retry", "#retry-<vendor>"),
// b.waitText("#status", "completed", …)) reuse consoleService, newBrowser and the browser's
// open/signIn/waitLive/waitText/waitFor/submit/screenshot helpers.
func TestConsoleInABrowser(t *testing.T) {
	s := consoleService(t)
	b := newBrowser(t, "http://"+s.HTTPAddr())

	// Signed out, the console sends the browser to the sign-in page; a wrong key is refused there.
	b.open("/ui/documents")
	b.waitText("h1", "Sign in", 10*time.Second)
	b.step("type a wrong key", 20*time.Second, chromedp.SendKeys(chromedp.CSS("#key"), "not-the-key"))
	b.submit("sign in with a wrong key", "#signin")
	b.waitText("#error", "not a valid API key", 10*time.Second)
	b.signIn(key)
	b.screenshot("overview")

	b.open("/ui/documents")
	b.waitLive()
	path, _ := writePDF(t, 20<<10)
	c := &httpdrop.Client{BaseURL: "http://" + s.HTTPAddr(), APIKey: key}
	resp, err := c.SubmitFile(ctxT(t), path, httpdrop.SubmitOptions{Vendors: []string{"gini"}})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Documents[0].ID
	row := `tr[data-id="` + id + `"]`
	// The page updates itself from the event stream: no reload here.
	b.waitText(row, "invoice.pdf", 30*time.Second)
	b.waitText(row, "completed", 45*time.Second)
	b.screenshot("documents-completed")

	b.submit("open the document", row+" a")
	b.step("see the fields", 20*time.Second, chromedp.WaitVisible(chromedp.CSS("#fields-gini")))
	if got := b.text("#status"); got != "completed" {
		t.Errorf("status on the detail page: %q", got)
	}
	fields := b.text("#fields-gini")
	for _, want := range []string{"amountToPay", "DE89370400440532013000"} {
		if !strings.Contains(fields, want) {
			t.Errorf("fields table lacks %s: %s", want, fields)
		}
	}
	b.waitFor("the preview frame", 10*time.Second,
		`(function(){var f=document.querySelector('iframe#preview');return f!==null&&f.getAttribute('src').indexOf('/content')>0})()`)
	if tl := b.text("#timeline"); !strings.Contains(tl, "received") || !strings.Contains(tl, "completed at gini") {
		t.Errorf("timeline: %s", tl)
	}
	b.screenshot("document")

	b.open("/ui/")
	b.waitText("#total", "1", 10*time.Second)
	b.waitText("#by-status", "completed", 10*time.Second)
	b.waitFor("a bar in the chart", 10*time.Second, `document.querySelectorAll('#throughput rect.bar[height]:not([height="0"])').length === 1`)
	b.screenshot("overview-after")
	b.open("/ui/vendors")
	b.waitText("#vendor-gini", "sandbox", 10*time.Second)
	b.screenshot("vendors")
	b.open("/ui/sources")
	b.waitText("#sources", "http/api", 10*time.Second)
	b.screenshot("sources")

	// Signing out ends the session: the console is closed again.
	b.submit("sign out", "header form.logout button")
	b.step("see the sign-in form", 20*time.Second, chromedp.WaitVisible(chromedp.CSS("#key")))
	b.open("/ui/vendors")
	b.waitText("h1", "Sign in", 10*time.Second)
}
