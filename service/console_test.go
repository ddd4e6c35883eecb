package service_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/config"
)

// consoleClient signs in to the console of the service at addr and returns the browser-like
// client (cookies kept, redirects not followed).
func consoleClient(t *testing.T, addr string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get("http://" + addr + "/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
	if res.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("sign-in page: %d %s", res.StatusCode, body)
	}
	res, err = c.PostForm("http://"+addr+"/ui/login", url.Values{"csrf": {string(m[1])}, "key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", res.StatusCode)
	}
	return c
}

// The console is wired: its pages answer with the service's own data, and its event streams end
// as soon as the service stops — an open browser tab does not hold the shutdown for the whole
// drain time.
func TestConsoleWiringAndShutdown(t *testing.T) {
	cfg := testConfig(t)
	cfg.ShutdownTimeout = config.Duration(30 * time.Second) // a stream still open would hold the stop ~29 s
	s := start(t, cfg)
	c := consoleClient(t, s.HTTPAddr())
	for path, want := range map[string]string{
		"/ui/":          `id="total"`,
		"/ui/documents": `id="documents"`,
		"/ui/sources":   `http/api`,
		"/ui/vendors":   `id="vendors"`,
	} {
		res, err := c.Get("http://" + s.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d, lacks %s", path, res.StatusCode, want)
		}
	}
	// Without a session the same pages are closed.
	res, err := http.Get("http://" + s.HTTPAddr() + "/ui/events")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("events without a session: %d", res.StatusCode)
	}

	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+s.HTTPAddr()+"/ui/events", nil)
	c.Timeout = 0 // the stream is long-lived; its end is what is tested
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	ended := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(ended)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if sc.Text() == "event: ready" {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("the event stream did not start")
	}
	begin := time.Now()
	stop(t, s)
	if took := time.Since(begin); took > 15*time.Second {
		t.Errorf("the service took %s to stop with a console event stream open", took)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the event stream is still open after the service stopped")
	}
}
