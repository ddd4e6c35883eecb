package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events/eventstest"
	"github.com/ingest-dev/ingest/service"
)

// syncBuffer is written by a command running in another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func writeFile(t *testing.T, name, content string) string {
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runningService starts a service on a fresh data_dir, free ports and the configuration extra
// (YAML appended to those), for the CLI to find through the returned config file. It is shut down,
// and ctx cancelled, when the test ends.
func runningService(t *testing.T, extra string, within time.Duration) (ctx context.Context, cfgPath string, s *service.Service) {
	t.Helper()
	cfgPath = writeFile(t, "config.yaml", "data_dir: "+t.TempDir()+"\nhttp:\n  listen: 127.0.0.1:0\nnats:\n  embedded:\n    listen: 127.0.0.1:0\n"+extra)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(cancel)
	s, err = service.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return ctx, cfgPath, s
}

// The CLI finds a running service from the same config alone, even on the free port the embedded
// NATS took, with the generated API key.
func TestCLIAgainstARunningService(t *testing.T) {
	ctx, cfgPath, _ := runningService(t, "", 60*time.Second)

	var tailOut, tailErr syncBuffer
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan int, 1)
	go func() { tailDone <- run(tctx, []string{"tail", "--config", cfgPath}, &tailOut, &tailErr) }()
	// tail prints new events only: what is submitted before it says it follows may be missed.
	eventstest.WaitFor(t, 20*time.Second, "tail to say it follows", func() bool { return strings.Contains(tailErr.String(), "ingest tail: following ingest.") })

	pdf := writeFile(t, "scan.pdf", "%PDF-1.4\nsome pdf\n")
	notDoc := writeFile(t, "archive.zip", "PK\x03\x04zipzipzip")
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"submit", pdf, notDoc, "--vendor", "gini", "--meta", "po=7", "--config", cfgPath}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "archive.zip") || !strings.Contains(errOut.String(), "application/zip") {
		t.Fatalf("submit: exit %d, stderr %q", code, errOut.String())
	}
	var sub struct{ ID, File string }
	if err := json.Unmarshal(out.Bytes(), &sub); err != nil || sub.ID == "" {
		t.Fatalf("submit output %q: %v", out.String(), err)
	}

	// A directory: refused without -r (nothing sent), every file in it and below with -r.
	dir := t.TempDir()
	for _, name := range []string{"a.pdf", "sub/b.pdf", ".hidden.pdf", ".git/c.pdf"} {
		p := filepath.Join(dir, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("%PDF-1.4\n"+name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var dout, derr bytes.Buffer
	if code := run(ctx, []string{"submit", dir, "--config", cfgPath}, &dout, &derr); code != 2 ||
		!strings.Contains(derr.String(), "is a directory; use -r") || dout.Len() != 0 {
		t.Fatalf("submit DIR: exit %d, %q %q", code, dout.String(), derr.String())
	}
	dout.Reset()
	if code := run(ctx, []string{"submit", "-r", dir, "--config", cfgPath}, &dout, &derr); code != 0 ||
		strings.Count(dout.String(), `"id"`) != 2 || !strings.Contains(dout.String(), "b.pdf") || strings.Contains(dout.String(), "c.pdf") {
		t.Fatalf("submit -r DIR: exit %d, %q %q", code, dout.String(), derr.String())
	}

	out.Reset()
	if code := run(ctx, []string{"status", sub.ID, "--config", cfgPath}, &out, &errOut); code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut.String())
	}
	var doc struct {
		Status   string            `json:"status"`
		Metadata map[string]string `json:"metadata"`
	}
	// (Sent to sandbox Gini, the document may be further along than received by now.)
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || doc.Status == "" || doc.Status == "failed" || doc.Metadata["po"] != "7" {
		t.Fatalf("status output %s", out.String())
	}

	eventstest.WaitFor(t, 10*time.Second, "tail to print the event", func() bool {
		return strings.Contains(tailOut.String(), `"subject":"`+sub.ID+`"`)
	})
	stopTail()
	if code := <-tailDone; code != 0 {
		t.Fatalf("tail exit %d: %s %s", code, tailOut.String(), tailErr.String())
	}
	var line string
	for _, l := range strings.Split(tailOut.String(), "\n") {
		if strings.Contains(l, sub.ID) {
			line = l
			break
		}
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev["subject"] != sub.ID ||
		!strings.HasPrefix(fmt.Sprint(ev["type"]), "ingest.document.received") {
		t.Fatalf("tail printed %q first for the document (it followed before the submit: the received event comes first)", line)
	}

	// --all replays what was there before.
	var replay syncBuffer
	rctx, stopReplay := context.WithCancel(ctx)
	replayDone := make(chan int, 1)
	go func() {
		replayDone <- run(rctx, []string{"tail", "--all", "ingest.document.received.>", "--config", cfgPath}, &replay, &replay)
	}()
	eventstest.WaitFor(t, 10*time.Second, "tail --all to replay", func() bool { return strings.Contains(replay.String(), sub.ID) })
	stopReplay()
	<-replayDone

	// state rebuild reads the document's events (what it applies is events.Rebuild's test: here a
	// vendor may publish while it runs, so the count applied is not fixed).
	var rb bytes.Buffer
	if code := run(ctx, []string{"state", "rebuild", "--config", cfgPath}, &rb, &rb); code != 0 ||
		!strings.Contains(rb.String(), "were missing from the state") || strings.Contains(rb.String(), "replayed 0 ") {
		t.Fatalf("state rebuild: exit %d, %q", code, rb.String())
	}
}

func TestCLIWithoutService(t *testing.T) {
	cfgPath := writeFile(t, "config.yaml", "data_dir: "+t.TempDir()+"\n")
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"status", "x", "--config", cfgPath}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "ingest is not running") {
		t.Fatalf("exit %d, %q", code, errOut.String())
	}
}

func TestConfigCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"config", "check"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "OK") {
		t.Fatalf("default config: exit %d %q %q", code, out.String(), errOut.String())
	}
	bad := writeFile(t, "bad.yaml", "htpp:\n  listen: x\nhttp:\n  max_files: -1\n  api_keys: [\"${NO_SUCH_VAR_FOR_TEST}\"]\n")
	out.Reset()
	errOut.Reset()
	code := run(context.Background(), []string{"config", "check", "--config", bad}, &out, &errOut)
	msg := errOut.String()
	if code == 0 || !strings.Contains(msg, `line 1: unknown key "htpp"`) || !strings.Contains(msg, "NO_SUCH_VAR_FOR_TEST is not set") {
		t.Fatalf("exit %d, %q", code, msg)
	}
}

// gen-token prints a token config check accepts as an API key; a weak key is refused with a
// suggestion, and the refusal does not print the weak key back.
func TestConfigGenToken(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"config", "gen-token"}, &out, &errOut); code != 0 {
		t.Fatalf("gen-token: exit %d %q", code, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	good := writeFile(t, "good.yaml", "data_dir: "+t.TempDir()+"\nhttp:\n  api_keys: ["+token+"]\n")
	out.Reset()
	if code := run(context.Background(), []string{"config", "check", "--config", good}, &out, &errOut); code != 0 {
		t.Fatalf("a generated token is refused: exit %d %q", code, errOut.String())
	}
	weak := writeFile(t, "weak.yaml", "data_dir: "+t.TempDir()+"\nhttp:\n  api_keys: [aaaaaaaaaaaaaaaa]\nvendors:\n  allspark: {callback_token: callback-token-1}\n")
	errOut.Reset()
	code := run(context.Background(), []string{"config", "check", "--config", weak}, &out, &errOut)
	msg := errOut.String()
	if code != 1 || !strings.Contains(msg, "http.api_keys[0]: is too easy to guess") ||
		!strings.Contains(msg, "vendors.allspark.callback_token: is too easy to guess") || !strings.Contains(msg, "gen-token") {
		t.Fatalf("weak tokens: exit %d, %q", code, msg)
	}
	if strings.Contains(msg, "aaaaaaaaaaaaaaaa") || strings.Contains(msg, "callback-token-1") {
		t.Fatalf("the refusal repeats the weak secret: %q", msg)
	}
}

// Every command answers -h and --help with its usage on stdout, exit 0.
func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"serve", "--help"}, {"tail", "-h"}, {"status", "--help"},
		{"submit", "--help"}, {"submit", "a.pdf", "-h"}, {"config", "--help"}, {"config", "check", "-h"}, {"config", "gen-token", "--help"},
		{"state", "--help"}, {"state", "rebuild", "-h"}, {"replay", "--help"}, {"webhooks", "-h"},
		{"ls", "--help"}, {"ls", "-h"}, {"result", "--help"}, {"result", "ID", "-h"}, {"get", "--help"}, {"get", "ID", "-o", "x", "-h"},
		{"retry", "--help"}, {"retry", "ID", "-h"}} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut)
		want := "ingest"
		if len(args) > 1 {
			want = "ingest " + args[0]
		}
		if args[0] == "serve" {
			want = "ingest [serve]"
		}
		if code != 0 || !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), want) || errOut.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"status"}, {"submit"}, {"config"}, {"config", "gen-token", "x"}, {"config", "nope"}, {"tail", "a", "b"}, {"serve", "--nope"}, {"state"}, {"state", "rebuild", "x"},
		{"ls", "x"}, {"ls", "--limit", "0"}, {"ls", "--limit", "501"}, {"ls", "--nope"}, {"result"}, {"result", "a", "b"}, {"result", "--nope", "a"},
		{"get"}, {"get", "ID"}, {"get", "ID", "-o"}, {"get", "a", "b", "-o", "x"}, {"get", "ID", "--vendor", "gini", "-o", "x"},
		{"retry"}, {"retry", "a", "b"}, {"retry", "a", "--nope"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "Usage:") {
			t.Errorf("%v: exit %d, %q", args, code, errOut.String())
		}
	}
}

// tail outlives a restart of the service: it says it lost the connection, reconnects to the
// same embedded NATS port, says so, and prints what happens after.
func TestTailSurvivesARestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	dataDir := t.TempDir()
	cfgPath := writeFile(t, "config.yaml", "data_dir: "+dataDir+"\nhttp:\n  listen: 127.0.0.1:0\n  api_keys: [tail-test-key-8f3a91c2d7e4b605]\nnats:\n  embedded:\n    listen: "+natsAddr+"\nroutes: []\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	startService := func() *service.Service {
		s, err := service.Start(ctx, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	submit := func(name string) string {
		var out, errOut bytes.Buffer
		p := writeFile(t, name, "%PDF-1.4\n"+name+"\n")
		if code := run(ctx, []string{"submit", p, "--config", cfgPath}, &out, &errOut); code != 0 {
			t.Fatalf("submit: exit %d %s", code, errOut.String())
		}
		var sub struct{ ID string }
		_ = json.Unmarshal(out.Bytes(), &sub)
		return sub.ID
	}
	s := startService()
	var tailOut, tailErr syncBuffer
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan int, 1)
	go func() { tailDone <- run(tctx, []string{"tail", "--config", cfgPath}, &tailOut, &tailErr) }()
	eventstest.WaitFor(t, 20*time.Second, "tail to say it follows", func() bool { return strings.Contains(tailErr.String(), "ingest tail: following") })
	before := submit("before.pdf")
	eventstest.WaitFor(t, 10*time.Second, "tail to print the first document", func() bool { return strings.Contains(tailOut.String(), before) })

	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventstest.WaitFor(t, 10*time.Second, "tail to say the connection is lost", func() bool {
		return strings.Contains(tailErr.String(), "lost the connection")
	})
	s = startService()
	defer s.Shutdown(context.Background())
	eventstest.WaitFor(t, 20*time.Second, "tail to reconnect", func() bool { return strings.Contains(tailErr.String(), "reconnected") })
	after := submit("after.pdf")
	eventstest.WaitFor(t, 20*time.Second, "tail to print the document sent after the restart", func() bool {
		return strings.Contains(tailOut.String(), after)
	})
	stopTail()
	if code := <-tailDone; code != 0 {
		t.Fatalf("tail exit %d: %s", code, tailErr.String())
	}
}
