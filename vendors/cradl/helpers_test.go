package cradl_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/cradl"
	"github.com/ingest-dev/ingest/vendors/cradl/cradlsim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

const (
	clientID     = "ingest-client"
	clientSecret = "s3cret"
	modelID      = "las:organization:cradl/las:model:invoice"
	workflowID   = "las:workflow:0123456789abcdef"
	workflowMail = "invoices-42@workflows.example.com"
)

func simConfig() cradlsim.Config {
	return cradlsim.Config{ClientID: clientID, ClientSecret: clientSecret, ModelID: modelID,
		WorkflowID: workflowID, WorkflowEmail: workflowMail}
}

// recorder keeps what the client sent, to check what the simulator does not insist on.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []seen
}

type seen struct {
	Method, Path, Host string
	Query              url.Values
	Header             http.Header
	ContentLength      int64
	Form               url.Values // of token requests
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	s := seen{Method: req.Method, Path: req.URL.Path, Host: req.URL.Host, Query: req.URL.Query(),
		Header: req.Header.Clone(), ContentLength: req.ContentLength}
	if req.URL.Path == "/oauth2/token" && req.GetBody != nil {
		if b, err := req.GetBody(); err == nil {
			raw, _ := io.ReadAll(b)
			s.Form, _ = url.ParseQuery(string(raw))
		}
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.reqs...)
}

func (r *recorder) count(method, pathPrefix string) int {
	n := 0
	for _, s := range r.all() {
		if s.Method == method && len(s.Path) >= len(pathPrefix) && s.Path[:len(pathPrefix)] == pathPrefix {
			n++
		}
	}
	return n
}

type fixture struct {
	sim *cradlsim.Server
	srv *httptest.Server
	rec *recorder
}

func newFixture(t *testing.T, edit func(*cradlsim.Config)) *fixture {
	t.Helper()
	cfg := simConfig()
	if edit != nil {
		edit(&cfg)
	}
	sim, err := cradlsim.New(cfg)
	if err != nil {
		t.Fatalf("cradlsim.New: %v", err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &fixture{sim: sim, srv: srv, rec: &recorder{next: srv.Client().Transport}}
}

// config is a client config against the simulator in a mode.
func (f *fixture) config(mode string) cradl.Config {
	return cradl.Config{BaseURL: f.srv.URL, TokenURL: f.srv.URL + "/oauth2/token",
		ClientID: clientID, ClientSecret: clientSecret, Mode: mode, ModelID: modelID, WorkflowID: workflowID,
		HTTPClient: &http.Client{Transport: f.rec}, Timeout: 30 * time.Second}
}

func (f *fixture) client(t *testing.T, mode string, edit func(*cradl.Config)) *cradl.Client {
	t.Helper()
	cfg := f.config(mode)
	if edit != nil {
		edit(&cfg)
	}
	c, err := cradl.New(cfg)
	if err != nil {
		t.Fatalf("cradl.New: %v", err)
	}
	return c
}

// smtp starts the simulator's SMTP receiver and points cfg at it (no TLS).
func (f *fixture) smtp(t *testing.T) func(*cradl.Config) {
	t.Helper()
	addr, stop, err := f.sim.ListenSMTP("127.0.0.1:0")
	if err != nil {
		t.Fatalf("ListenSMTP: %v", err)
	}
	t.Cleanup(stop)
	return smtpAt(addr, cradl.SMTPNone)
}

func smtpAt(addr, mode string) func(*cradl.Config) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	return func(c *cradl.Config) {
		c.SMTP = cradl.SMTPConfig{Host: host, Port: p, From: "ingest@example.com", TLS: mode}
	}
}

// document is a vendors.Document over content that counts how often it was opened.
func document(id, name, contentType string, content []byte) (vendors.Document, *atomic.Int32) {
	opens := &atomic.Int32{}
	sum, size := simkit.Digest(content)
	return vendors.Document{
		ID: id, Filename: name, ContentType: contentType, Size: size, SHA256: sum,
		Open: func(context.Context) (io.ReadCloser, error) {
			opens.Add(1)
			return io.NopCloser(bytes.NewReader(content)), nil
		},
	}, opens
}

func must(doc vendors.Document, _ *atomic.Int32) vendors.Document { return doc }

func pdf(s string) []byte { return []byte("%PDF-1.7\n" + s + "\n%%EOF\n") }

func asVendorError(t *testing.T, err error) *vendors.Error {
	t.Helper()
	var ve *vendors.Error
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *vendors.Error", err, err)
	}
	return ve
}

func fieldsByName(fs []events.Field) map[string]events.Field {
	m := map[string]events.Field{}
	for _, f := range fs {
		m[f.Name] = f
	}
	return m
}

// pollUntilDone checks ref until done, failing after n checks; it returns how many were pending.
func pollUntilDone(t *testing.T, c *cradl.Client, ref string, n int) (pending int, p vendors.Progress) {
	t.Helper()
	for range n {
		p, err := c.Check(t.Context(), ref)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if p.Done {
			return pending, p
		}
		pending++
	}
	t.Fatalf("%s not done after %d checks", ref, n)
	return
}

// testCert is httptest's certificate (valid for 127.0.0.1) and a client config that trusts it.
func testCert(t *testing.T) (tls.Certificate, *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv.TLS.Certificates[0], &tls.Config{RootCAs: pool}
}

// newReceiver is a webhook receiver that hands each body to got.
func newReceiver(t *testing.T, got chan<- []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	t.Cleanup(srv.Close)
	return srv
}
