package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/events/eventstest"
)

// ls, result and get against a running service whose sandbox Gini and Laigo complete a document
// (Laigo with its result ZIP).
func TestDocumentCommands(t *testing.T) {
	ctx, cfgPath, _ := runningService(t, "vendors:\n  gini: {poll: {initial: 50ms}}\n  laigo: {rate_limit: 100, poll: {initial: 50ms}}\n", 90*time.Second)
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, append(args, "--config", cfgPath), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	pdfBytes := "%PDF-1.4\nthe invoice of the test\n"
	pdf := writeFile(t, "invoice.pdf", pdfBytes)
	code, out, errOut := cli("submit", pdf, "--vendor", "gini", "--vendor", "laigo")
	var sub struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &sub) != nil {
		t.Fatalf("submit: %d %q %q", code, out, errOut)
	}
	code, out, errOut = cli("submit", writeFile(t, "other.pdf", "%PDF-1.4\nanother\n"), "--vendor", "gini")
	var other struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &other) != nil {
		t.Fatalf("submit: %d %q %q", code, out, errOut)
	}
	c, err := docClient(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	eventstest.WaitFor(t, 30*time.Second, "both documents to complete and be listed", func() bool {
		for _, id := range []string{sub.ID, other.ID} {
			r, err := c.Results(ctx, id)
			if err != nil || r.Status != events.StatusCompleted {
				return false
			}
		}
		page, err := c.List(ctx, map[string][]string{"status": {"completed"}})
		return err == nil && len(page.Documents) == 2
	})

	// ls: one JSON object per line when not on a terminal, newest first; filters; --all pages.
	code, out, errOut = cli("ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first events.Document
	if code != 0 || len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &first) != nil || first.ID != other.ID {
		t.Fatalf("ls: %d %q %q", code, out, errOut)
	}
	if code, out, _ = cli("ls", "--vendor", "laigo", "--status", "completed", "--since", "1h"); code != 0 ||
		strings.Count(out, "\n") != 1 || !strings.Contains(out, sub.ID) {
		t.Fatalf("ls --vendor laigo: %d %q", code, out)
	}
	if code, out, _ = cli("ls", "--status", "failed", "--json"); code != 0 || out != "" {
		t.Fatalf("ls --status failed: %d %q", code, out)
	}
	if code, out, _ = cli("ls", "--limit", "1"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("ls --limit 1: %d %q", code, out)
	}
	if code, out, _ = cli("ls", "--limit", "1", "--all"); code != 0 || strings.Count(out, "\n") != 2 ||
		!strings.Contains(out, sub.ID) || !strings.Contains(out, other.ID) {
		t.Fatalf("ls --limit 1 --all: %d %q", code, out)
	}
	if code, _, errOut = cli("ls", "--status", "bogus"); code != 1 || !strings.Contains(errOut, "status") {
		t.Fatalf("ls --status bogus: %d %q", code, errOut)
	}
	if code, _, errOut = cli("ls", "--since", "yesterday"); code != 1 || !strings.Contains(errOut, "since") {
		t.Fatalf("ls --since yesterday: %d %q", code, errOut)
	}

	// result: a table of fields per vendor, or the JSON.
	code, out, errOut = cli("result", sub.ID)
	for _, want := range []string{sub.ID, "gini: completed", "laigo: completed", "FIELD", "VALUE", "file: result.zip",
		"--artifact result.zip --vendor laigo"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("result: %d, %q lacks %q (%s)", code, out, want, errOut)
		}
	}
	code, out, _ = cli("result", sub.ID, "--json")
	var r docapi.Results
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || len(r.Results["gini"].Fields) == 0 || len(r.Results["laigo"].Artifacts) != 1 {
		t.Fatalf("result --json: %d %q", code, out)
	}
	if code, _, errOut = cli("result", "01930000-0000-7000-8000-00000000ffff"); code != 1 || !strings.Contains(errOut, "no document") {
		t.Fatalf("result of an unknown id: %d %q", code, errOut)
	}

	// get: the document, to a file or stdout; a result file; a failure leaves no file behind.
	dir := t.TempDir()
	dest := filepath.Join(dir, "back.pdf")
	if code, _, errOut = cli("get", sub.ID, "-o", dest); code != 0 {
		t.Fatalf("get: %d %q", code, errOut)
	}
	if b, err := os.ReadFile(dest); err != nil || string(b) != pdfBytes {
		t.Fatalf("get wrote %q %v", b, err)
	}
	if code, out, _ = cli("get", sub.ID, "-o", "-"); code != 0 || out != pdfBytes {
		t.Fatalf("get -o -: %d %q", code, out)
	}
	zip := filepath.Join(dir, "result.zip")
	if code, _, errOut = cli("get", sub.ID, "--artifact", "result.zip", "--vendor", "laigo", "-o", zip); code != 0 {
		t.Fatalf("get --artifact: %d %q", code, errOut)
	}
	if b, err := os.ReadFile(zip); err != nil || !bytes.HasPrefix(b, []byte("PK")) || int64(len(b)) != r.Results["laigo"].Artifacts[0].Size {
		t.Fatalf("the result ZIP: %d bytes, %v", len(b), err)
	}
	if code, _, errOut = cli("get", sub.ID, "--artifact", "nothing.zip", "-o", filepath.Join(dir, "nothing.zip")); code != 1 ||
		!strings.Contains(errOut, "nothing.zip") {
		t.Fatalf("get of a missing artifact: %d %q", code, errOut)
	}
	// An earlier file of that name stays as it was when the download fails.
	if code, _, _ = cli("get", "01930000-0000-7000-8000-00000000ffff", "-o", dest); code != 1 {
		t.Fatalf("get of an unknown document: %d", code)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "back.pdf result.zip" {
		t.Fatalf("the directory holds %v: a failed download left something", names)
	}
	if b, _ := os.ReadFile(dest); string(b) != pdfBytes {
		t.Fatalf("a failed download changed the earlier file: %q", b)
	}
}

// On a terminal, ls prints aligned columns and a counts line; result a table of fields.
func TestDocumentTables(t *testing.T) {
	at := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	docs := []events.Document{
		{ID: "01a2", Status: events.StatusCompleted, Source: events.SourceRef{Kind: "imap", Name: "invoices"}, Filename: "scan\x1b[31m.pdf",
			Chosen: []string{"gini", "laigo"}, ReceivedAt: at,
			Vendors: map[string]*events.VendorState{"gini": {Status: events.StatusCompleted}, "laigo": {Status: events.StatusFailed}}},
		{ID: "01a3-long-identifier", Status: events.StatusReceived, Source: events.SourceRef{Kind: "http", Name: "api"}, Filename: "b.pdf", ReceivedAt: at},
	}
	var b bytes.Buffer
	printDocuments(&b, docs)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", b.String())
	}
	col := strings.Index(lines[0], "STATUS")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "completed") && !strings.HasPrefix(l[col:], "received") {
			t.Fatalf("STATUS is not aligned:\n%s", b.String())
		}
	}
	if !strings.Contains(lines[1], "gini, laigo:failed") || !strings.Contains(lines[1], "imap/invoices") ||
		strings.Contains(b.String(), "\x1b") {
		t.Fatalf("row: %q", lines[1])
	}
	if got := countsLine(2, map[string]int64{"completed": 811, "failed": 1}, true); !strings.HasPrefix(got, "2 shown of 812: 811 completed, 1 failed (more: --all") {
		t.Fatalf("counts line %q", got)
	}

	conf, page := 0.5, 2
	b.Reset()
	printResults(&b, docapi.Results{ID: "01a2", Status: events.StatusFailed, Filename: "scan.pdf", Pending: []string{"cradl"},
		Results: map[string]*docapi.VendorResult{
			"gini": {Status: events.StatusCompleted, VendorRef: "g-1", CompletedAt: at,
				Fields: []events.Field{{Name: "total", Value: "24.99", Currency: "EUR", Confidence: &conf, Page: &page}, {Name: "iban", Value: "DE02"}}},
			"laigo": {Status: events.StatusFailed, Failures: []docapi.Failure{{Error: "too blurry", Permanent: true, FailedAt: at}}},
		}})
	for _, want := range []string{"gini: completed, ref g-1", "24.99 EUR", "0.50", "iban", "laigo: failed", "(permanent): too blurry", "still at work: cradl"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("results lack %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printResults(&b, docapi.Results{ID: "01a4", Status: events.StatusSubmitted, Pending: []string{"gini"}, Results: map[string]*docapi.VendorResult{}})
	if !strings.Contains(b.String(), "no results yet") || !strings.Contains(b.String(), "still at work: gini") {
		t.Fatalf("no results:\n%s", b.String())
	}
}

// ls against a service without the list index says so, rather than "no endpoint".
func TestLsWithoutIndex(t *testing.T) {
	ctx, cfgPath, _ := runningService(t, "index:\n  enabled: false\nroutes: []\n", 60*time.Second)
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"ls", "--config", cfgPath}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "index.enabled: false") {
		t.Fatalf("ls: exit %d, %q", code, errOut.String())
	}
}
