package documine_test

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/documine"
	"github.com/ingest-dev/ingest/vendors/documine/documinesim"
	"github.com/ingest-dev/ingest/vendors/simkit"
)

// customAPI is a shape set unlike the defaults in every request: other methods, paths, field
// names, nested keys and status values. The simulator serves only what it is given, so a shape
// the client ignored would fail.
func customAPI() documine.API {
	a := documine.DefaultAPI()
	a.Upload = documine.UploadShape{RequestShape: documine.RequestShape{Method: http.MethodPut, Path: "/v2/{dossierId}/documents"},
		FileField: "document", IDKeys: []string{"data.document.id"}}
	a.Status = documine.StatusShape{RequestShape: documine.RequestShape{Method: http.MethodPost, Path: "/v2/{dossierId}/documents/{fileId}/state"},
		Field: "state.phase", DoneValues: []string{"DONE"}, FailedValues: []string{"BROKEN"},
		PendingValues: []string{"QUEUED", "RUNNING"}, ErrorKeys: []string{"state.reason"}}
	a.List = documine.RequestShape{Method: http.MethodGet, Path: "/v2/{dossierId}/documents"}
	a.Components = documine.ResultShape{RequestShape: documine.RequestShape{Method: http.MethodGet,
		Path: "/v2/{templateId}/{dossierId}/documents/{fileId}/extraction"}, TextKey: "ocr.fullText"}
	return a
}

// customPackageAPI is customAPI with a result package of its own shapes.
func customPackageAPI() documine.API {
	a := customAPI()
	a.ResultMode = documine.ResultPackage
	a.Package = documine.PackageShape{
		Create: documine.CreateShape{RequestShape: documine.RequestShape{Method: http.MethodPut, Path: "/v2/{dossierId}/packages"},
			Body: `{"request":{"files":["{fileId}"],"kind":"components"}}`, IDKeys: []string{"package.key"}},
		Status: documine.StatusShape{RequestShape: documine.RequestShape{Method: http.MethodGet, Path: "/v3/packages/{downloadId}"},
			Field: "progress.state", DoneValues: []string{"COMPLETE"}, FailedValues: []string{"ABORTED"},
			PendingValues: []string{"WAITING", "BUILDING"}, ErrorKeys: []string{"progress.error"}},
		Download: documine.DownloadShape{RequestShape: documine.RequestShape{Method: http.MethodGet, Path: "/v3/packages/{downloadId}/archive"},
			MaxBytes: 1 << 20, TextFiles: "*.txt"},
		Delete: documine.RequestShape{Method: http.MethodPost, Path: "/v3/packages/{downloadId}/discard"},
	}
	return a
}

func packageAPI() documine.API {
	a := documine.DefaultAPI()
	a.ResultMode = documine.ResultPackage
	return a
}

// shaped starts a simulator serving simAPI and a client configured with clientAPI.
func shaped(t *testing.T, clientAPI documine.API, simAPI documinesim.API, simMod func(*documinesim.Config)) (*documinesim.Server, *documine.Client) {
	t.Helper()
	return setup(t, func(sc *documinesim.Config) {
		sc.API = simAPI
		sc.MaxBytes = 1 << 20
		if simMod != nil {
			simMod(sc)
		}
	}, func(cc *documine.Config) { cc.API = clientAPI })
}

// drive takes a document through Submit, Check until done (a bounded number of looks: the
// simulator moves on with each), and Result.
func drive(t *testing.T, c *documine.Client, name string, content []byte) (string, vendors.Result) {
	t.Helper()
	ctx := context.Background()
	ref, err := c.Submit(ctx, document(name, content, nil))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	for look := 1; ; look++ {
		p, err := c.Check(ctx, ref)
		if err != nil || p.Failed {
			t.Fatalf("look %d: %+v %v", look, p, err)
		}
		if p.Done {
			break
		}
		if look == 20 {
			t.Fatal("not done after 20 looks")
		}
	}
	res, err := c.Result(ctx, ref)
	if err != nil {
		t.Fatalf("result: %v", err)
	}
	return ref, res
}

func wantFields(rec simkit.Recognised) []events.Field {
	return []events.Field{
		{Name: "Invoice_Number", Value: rec.InvoiceNumber},
		{Name: "Invoice_Date", Value: rec.Date},
		{Name: "Total", Value: rec.Total},
		{Name: "Currency", Value: rec.Currency},
	}
}

// Each shape set runs end to end against a simulator serving the same shapes, as sandbox mode
// starts it (SandboxAPI).
func TestShapesEndToEnd(t *testing.T) {
	withText := func(a documine.API) documine.API {
		a.Components.TextKey = "text"
		return a
	}
	withPackageText := func(a documine.API) documine.API {
		a.Package.Download.TextFiles = "*.txt"
		return a
	}
	tests := []struct {
		name     string
		api      documine.API
		simMod   func(*documinesim.Config)
		wantText bool
		artifact string // the package artifact's name, "" for none
		deletes  int
	}{
		{"default shapes", documine.DefaultAPI(), nil, false, "", 0},
		{"default shapes with text", withText(documine.DefaultAPI()), nil, true, "", 0},
		{"custom shapes", customAPI(), nil, true, "", 0},
		{"package, default shapes", packageAPI(), nil, false, "result-package.zip", 1},
		{"package with text files", withPackageText(packageAPI()), nil, true, "result-package.zip", 1},
		{"package, custom shapes", customPackageAPI(), nil, true, "result-package.zip", 1},
		{"package as JSON with text", func() documine.API {
			a := packageAPI()
			a.Package.Download.TextKey = "content.text"
			return a
		}(), func(sc *documinesim.Config) { sc.API.Package.Format = "json" }, true, "result-package.json", 1},
		{"package kept (no delete path)", func() documine.API {
			a := packageAPI()
			a.Package.Delete.Path = ""
			return a
		}(), nil, false, "result-package.zip", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := shaped(t, tt.api, documine.SandboxAPI(tt.api), func(sc *documinesim.Config) {
				sc.PendingPolls = 2
				if tt.simMod != nil {
					tt.simMod(sc)
				}
			})
			content := pdfWith(tt.name)
			ref, res := drive(t, c, "invoice.pdf", content)
			rec := simkit.RecogniseContent("invoice.pdf", content)
			if !reflect.DeepEqual(res.Fields, wantFields(rec)) {
				t.Errorf("fields %+v, want %+v", res.Fields, wantFields(rec))
			}
			if want := map[bool]string{true: rec.Text}[tt.wantText]; res.Text != want {
				t.Errorf("text %q, want %q", res.Text, want)
			}
			if !bytes.Contains(res.Raw, []byte(ref)) {
				t.Errorf("raw %s does not carry the file's answer", res.Raw)
			}
			checkArtifact(t, res.Artifacts, tt.artifact)
			if err := c.Finish(context.Background(), ref); err != nil {
				t.Fatalf("finish: %v", err)
			}
			if got := sim.Requests("package-delete"); got != tt.deletes {
				t.Errorf("%d package deletes, want %d", got, tt.deletes)
			}
			if sim.Packages() != 1-tt.deletes && tt.artifact != "" {
				t.Errorf("%d packages left at DocuMine", sim.Packages())
			}
			sha, _ := simkit.Digest(content)
			if n := sim.Ledger.Count(sha); n != 1 {
				t.Errorf("uploaded %d times, want 1", n)
			}
		})
	}
}

func checkArtifact(t *testing.T, got []vendors.Artifact, name string) {
	t.Helper()
	if name == "" {
		if len(got) != 0 {
			t.Errorf("artifacts %+v, want none", got)
		}
		return
	}
	if len(got) != 1 || got[0].Name != name {
		t.Fatalf("artifacts %+v, want one named %s", got, name)
	}
	// Opened twice: the poller may retry storing it, and the package may be gone by then.
	for range 2 {
		r, err := got[0].Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		if strings.HasSuffix(name, ".zip") {
			if _, err := zip.NewReader(bytes.NewReader(b), int64(len(b))); err != nil || got[0].ContentType != "application/zip" {
				t.Fatalf("artifact is not a ZIP (%s): %v", got[0].ContentType, err)
			}
		} else if !bytes.HasPrefix(b, []byte("{")) || got[0].ContentType != "application/json" {
			t.Fatalf("artifact %q (%s) is not the JSON package", b, got[0].ContentType)
		}
	}
}

// A simulator answering in shapes the client was not configured for: the client fails at once
// with an error that names what it expected (never pending forever, never another file's id).
func TestShapeMismatch(t *testing.T) {
	ctx := context.Background()
	submit := func(c *documine.Client) error { _, err := c.Submit(ctx, document("a.pdf", pdf, nil)); return err }
	checkUntil := func(c *documine.Client) error {
		ref, err := c.Submit(ctx, document("a.pdf", pdf, nil))
		if err != nil {
			return err
		}
		for range 5 { // the file is pending once, then done: package requests follow
			if p, err := c.Check(ctx, ref); err != nil || p.Done {
				return err
			}
		}
		return nil
	}
	tests := []struct {
		name      string
		simMod    func(*documinesim.API)
		clientAPI documine.API
		call      func(*documine.Client) error
		status    int
		want      string
	}{
		{"multipart field", func(a *documinesim.API) { a.FileField = "document" }, documine.DefaultAPI(), submit,
			400, "Required request part 'document' is not present"},
		{"upload path", func(a *documinesim.API) { a.UploadPath = "/v2/{dossierId}/documents" }, documine.DefaultAPI(), submit,
			404, "No endpoint POST /api/dossier-templates/tpl/dossiers/dos/files"},
		{"upload method", func(a *documinesim.API) { a.UploadMethod = http.MethodPut; a.ListPath = "/other" }, documine.DefaultAPI(), submit,
			404, "No endpoint POST"},
		{"upload id key", func(a *documinesim.API) { a.IDKey = "data.fileId" }, documine.DefaultAPI(), submit,
			0, "none of the configured id keys (fileId, id, fileIds)"},
		{"status field", func(a *documinesim.API) { a.Status.Field = "state" }, documine.DefaultAPI(), checkUntil,
			0, "the status answer has no processingStatus (api.status.field)"},
		{"status path", func(a *documinesim.API) { a.StatusPath = a.UploadPath + "/{fileId}/status" }, documine.DefaultAPI(), checkUntil,
			404, "No endpoint GET"},
		{"status value not in a declared enum", func(a *documinesim.API) { a.Status.PendingValues = []string{"WAITING"} },
			func() documine.API {
				a := documine.DefaultAPI()
				a.Status.PendingValues = []string{"UNPROCESSED", "PROCESSING"}
				return a
			}(), checkUntil,
			0, `processingStatus "WAITING" is none of the configured values (done PROCESSED, failed ERROR/FAILED, pending UNPROCESSED/PROCESSING): add it to api.status.pending_values`},
		{"package id key", func(a *documinesim.API) { a.Package.IDKey = "data.id" }, packageAPI(), checkUntil,
			0, "no package id in the answer (api.package.create.id_keys)"},
		{"package status field", func(a *documinesim.API) { a.Package.Status.Field = "state" }, packageAPI(), checkUntil,
			0, "the status answer has no status (api.package.status.field)"},
		{"package create path", func(a *documinesim.API) { a.Package.CreatePath = "/api/downloads" }, packageAPI(), checkUntil,
			404, "No endpoint POST /api/dossier-templates/tpl/dossiers/dos/create-download"},
		{"package body names no file", nil, func() documine.API {
			a := packageAPI()
			a.Package.Create.Body = `{"all":true}`
			return a
		}(), checkUntil, 400, "The request names no file of this dossier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			simAPI := documinesim.DefaultAPI()
			if tt.simMod != nil {
				tt.simMod(&simAPI)
			}
			_, c := shaped(t, tt.clientAPI, simAPI, func(sc *documinesim.Config) { sc.PendingPolls = 1 })
			e := asVendorError(t, tt.call(c))
			if !e.Permanent || e.Status != tt.status || !strings.Contains(e.Message, tt.want) {
				t.Fatalf("got %+v, want permanent %d with %q", e, tt.status, tt.want)
			}
		})
	}
}

// Without a declared pending list an unknown status is "not yet", look after look: the poll
// deadline ends it, not an error (the enum is not documented).
func TestUnknownStatusIsPendingWithoutEnum(t *testing.T) {
	simAPI := documinesim.DefaultAPI()
	simAPI.Status.DoneValue = "DONE"
	_, c := shaped(t, documine.DefaultAPI(), simAPI, nil)
	ctx := context.Background()
	ref, err := c.Submit(ctx, document("a.pdf", pdf, nil))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if p, err := c.Check(ctx, ref); err != nil || p.Done {
			t.Fatalf("got %+v %v, want not yet", p, err)
		}
	}
}

func TestPackageFlow(t *testing.T) {
	ctx := context.Background()
	t.Run("a failed package fails the document with DocuMine's words", func(t *testing.T) {
		sim, c := shaped(t, packageAPI(), documine.SandboxAPI(packageAPI()), nil)
		ref, err := c.Submit(ctx, document("a.pdf", pdf, nil))
		if err != nil {
			t.Fatal(err)
		}
		sim.SetPackageStatus("FAILED")
		p, err := c.Check(ctx, ref)
		want := vendors.Progress{Done: true, Failed: true, Error: "DocuMine could not build the result package: Simulated report generation failure"}
		if err != nil || p != want {
			t.Fatalf("got %+v %v, want %+v", p, err, want)
		}
	})
	t.Run("one package per file while it is made", func(t *testing.T) {
		sim, c := shaped(t, packageAPI(), documine.SandboxAPI(packageAPI()), func(sc *documinesim.Config) { sc.PendingPolls = 3 })
		drive(t, c, "a.pdf", pdf)
		if n := sim.Requests("package-create"); n != 1 {
			t.Fatalf("%d packages made, want 1", n)
		}
	})
	t.Run("a package gone is made again", func(t *testing.T) {
		sim, c := shaped(t, packageAPI(), documine.SandboxAPI(packageAPI()), func(sc *documinesim.Config) { sc.PendingPolls = 1 })
		ref, err := c.Submit(ctx, document("a.pdf", pdf, nil))
		if err != nil {
			t.Fatal(err)
		}
		if p, err := c.Check(ctx, ref); err != nil || p.Done { // file pending
			t.Fatalf("%+v %v", p, err)
		}
		if p, err := c.Check(ctx, ref); err != nil || p.Done { // package made, pending
			t.Fatalf("%+v %v", p, err)
		}
		sim.Faults.Add("package-status", simkit.Fault{Status: 404, Body: `{"message":"Download x not found"}`})
		_, err = c.Check(ctx, ref)
		if e := asVendorError(t, err); e.Permanent || !strings.Contains(e.Message, "a new one is made") {
			t.Fatalf("got %+v, want a transient error saying a new package is made", e)
		}
		if p, err := c.Check(ctx, ref); err != nil || p.Done {
			t.Fatalf("%+v %v", p, err)
		}
		if n := sim.Requests("package-create"); n != 2 {
			t.Fatalf("%d packages made, want 2", n)
		}
	})
	t.Run("another instance's result makes its own package", func(t *testing.T) {
		sc := simConfig()
		sc.API, sc.PendingPolls = documine.SandboxAPI(packageAPI()), 1
		sim, err := documinesim.New(sc)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(sim)
		defer srv.Close()
		newClient := func() *documine.Client {
			cfg := clientConfig(srv.URL)
			cfg.API = packageAPI()
			c, err := documine.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		ref, _ := drive(t, newClient(), "a.pdf", pdf)
		other := newClient()
		_, err = other.Result(ctx, ref)
		if e := asVendorError(t, err); e.Permanent || !strings.Contains(e.Message, "being made") {
			t.Fatalf("got %+v, want a transient 'being made'", e)
		}
		if p, err := other.Check(ctx, ref); err != nil || !p.Done {
			t.Fatalf("%+v %v", p, err)
		}
		if res, err := other.Result(ctx, ref); err != nil || len(res.Fields) != 4 {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

// Answers that are broken, or too large to hold, are permanent errors that say so.
func TestMalformedPackages(t *testing.T) {
	ctx := context.Background()
	var bomb bytes.Buffer
	zw := zip.NewWriter(&bomb)
	w, _ := zw.Create("report.json")
	_, _ = w.Write([]byte(`{"components":[` + strings.Repeat(`{"name":"x","value":"y"},`, 100000) + `{}]}`))
	_ = zw.Close()
	var badEntry bytes.Buffer
	zw = zip.NewWriter(&badEntry)
	w, _ = zw.Create("report.json")
	_, _ = w.Write([]byte(`{"components":[`))
	_ = zw.Close()
	tests := []struct {
		name string
		body string
		want string
	}{
		{"neither ZIP nor JSON", "<html>ready</html>", "neither a ZIP nor JSON"},
		{"a broken ZIP", "PK\x03\x04garbage", "not a readable ZIP"},
		{"a report that is not JSON", badEntry.String(), "package entry report.json: the components answer is not JSON"},
		{"unpacks beyond max_bytes", bomb.String(), "unpacks to more than 65536 bytes (api.package.download.max_bytes)"},
		{"larger than max_bytes", strings.Repeat("x", 70000), "larger than 65536 bytes (api.package.download.max_bytes)"},
	}
	a := packageAPI()
	a.Package.Download.MaxBytes = 64 << 10
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim, c := shaped(t, a, documine.SandboxAPI(a), nil)
			ref, err := c.Submit(ctx, document("a.pdf", pdf, nil))
			if err != nil {
				t.Fatal(err)
			}
			if p, err := c.Check(ctx, ref); err != nil || !p.Done {
				t.Fatalf("%+v %v", p, err)
			}
			sim.Faults.Add("package-download", simkit.Fault{Status: 200, Body: tt.body, ContentType: "application/zip"})
			_, err = c.Result(ctx, ref)
			if e := asVendorError(t, err); !e.Permanent || !strings.Contains(e.Message, tt.want) {
				t.Fatalf("got %+v, want permanent with %q", e, tt.want)
			}
		})
	}
}

func TestOversizedStatusAnswer(t *testing.T) {
	sim, c := setup(t, nil, nil)
	sim.Faults.Add("status", simkit.Fault{Status: 200, Body: `{"processingStatus":"` + strings.Repeat("x", 32<<20) + `"}`})
	_, err := c.Check(context.Background(), "f")
	if e := asVendorError(t, err); !e.Permanent || !strings.Contains(e.Message, "answer larger than") {
		t.Fatalf("got %+v", e)
	}
}
