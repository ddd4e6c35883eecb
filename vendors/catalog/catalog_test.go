package catalog_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/catalog"
)

func noEnv(string) (string, bool) { return "", false }

// plan configures the vendors of a YAML file.
func plan(t *testing.T, yml string) (*catalog.Plan, []config.Problem) {
	t.Helper()
	cfg, err := config.Parse([]byte(yml), "t.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	return catalog.Configure(cfg.Vendors)
}

// The shipped config.yaml claims to show every vendor's defaults and the default route; hold it
// to that.
func TestShippedConfigHoldsEveryVendorsDefaults(t *testing.T) {
	cfg, err := config.Parse(ingest.DefaultConfigYAML(), "config.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, problems := catalog.Configure(cfg.Vendors)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if !reflect.DeepEqual(cfg.Routes, p.DefaultRoutes()) {
		t.Errorf("config.yaml's routes %+v are not the default %+v", cfg.Routes, p.DefaultRoutes())
	}
	for _, s := range catalog.Specs() {
		if got, want := p.Settings(s.Name), s.NewConfig(); !reflect.DeepEqual(got, want) {
			t.Errorf("config.yaml's vendors.%s differs from the vendor's defaults:\n got %+v\nwant %+v", s.Name, got, want)
		}
	}
}

func TestSandboxCatalog(t *testing.T) {
	var logs strings.Builder
	p, problems := plan(t, "")
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	c, err := catalog.Build(context.Background(), p, catalog.BuildConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil)), PublicURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	names := c.Names()
	if strings.Join(names, ",") != "allspark,cradl,documine,gini,laigo" || len(c.Sandboxes) != 5 {
		t.Fatalf("vendors %v, sandboxes %v", names, c.Sandboxes)
	}
	if !strings.Contains(logs.String(), "SANDBOX") {
		t.Fatal("sandbox mode is not announced")
	}
	if p := c.Poll["gini"]; p.Initial != time.Second || p.Deadline != 24*time.Hour {
		t.Fatalf("poll settings %+v", p)
	}
	// A sandbox client works against its simulator end to end.
	ctx := context.Background()
	doc := vendors.Document{ID: "d1", Filename: "a.pdf", ContentType: "application/pdf", Size: 9,
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("%PDF-1.7\n")), nil
		}}
	for _, n := range names {
		ref, err := c.Vendors[n].Submit(ctx, doc)
		if err != nil || ref == "" {
			t.Fatalf("%s: submit: %q %v", n, ref, err)
		}
	}
	c.Close(ctx)
	if _, err := http.Get(c.Sandboxes["gini"]); err == nil {
		t.Fatal("simulator still answers after Close")
	}
}

func TestProductionCatalogUsesConfiguredEndpoints(t *testing.T) {
	off := "  gini: {enabled: false}\n  allspark: {enabled: false}\n  documine: {enabled: false}\n  cradl: {enabled: false}\n"
	p, problems := plan(t, "vendors:\n  laigo: {sandbox: false, client_id: id, client_secret: secret}\n"+off)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	c, err := catalog.Build(context.Background(), p, catalog.BuildConfig{Logger: slog.New(slog.DiscardHandler), PublicURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if len(c.Vendors) != 1 || c.Vendors["laigo"] == nil || len(c.Sandboxes) != 0 || strings.Join(p.Enabled(), ",") != "laigo" {
		t.Fatalf("catalog %+v", c)
	}
	// Missing production credentials are a problem of the configuration, named by key and line.
	_, problems = plan(t, "vendors:\n  laigo:\n    sandbox: false\n    client_id: id\n"+off)
	if len(problems) != 1 || problems[0].Key != "vendors.laigo.client_secret" {
		t.Fatalf("problems %v", problems)
	}
}

func TestUnknownVendorAndKeys(t *testing.T) {
	_, problems := plan(t, "vendors:\n  abbyy: {enabled: true}\n  gini:\n    client_idd: x\n")
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{`vendors.abbyy: there is no vendor "abbyy"`, `line 4: unknown key "vendors.gini.client_idd" (did you mean "client_id"?)`} {
		if !strings.Contains(all, want) {
			t.Errorf("problems do not say %q:\n%s", want, all)
		}
	}
}

// Sandbox mode keeps DocuMine's configured request shapes: the simulator serves them, so a shape
// the client did not honour would fail here.
func TestSandboxKeepsDocuMineShapes(t *testing.T) {
	off := "  laigo: {enabled: false}\n  gini: {enabled: false}\n  allspark: {enabled: false}\n  cradl: {enabled: false}\n"
	p, problems := plan(t, `vendors:
  documine:
    sandbox_pending_polls: 1
    api:
      upload: {method: PUT, path: "/v2/{dossierId}/documents", file_field: document, id_keys: [data.document.id]}
      status: {method: GET, path: "/v2/{dossierId}/documents/{fileId}", field: state.phase, done_values: [DONE], failed_values: [BROKEN], pending_values: [QUEUED, RUNNING]}
      result_mode: package
      package:
        create: {method: POST, path: "/v2/{dossierId}/packages", body: '{"files":["{fileId}"]}', id_keys: [package.key]}
        status: {path: "/v3/packages/{downloadId}", field: progress.state, done_values: [COMPLETE], failed_values: [ABORTED]}
        download: {path: "/v3/packages/{downloadId}/archive", text_files: "*.txt"}
        delete: {path: ""}
`+off)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	ctx := context.Background()
	c, err := catalog.Build(ctx, p, catalog.BuildConfig{Logger: slog.New(slog.DiscardHandler), PublicURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	v := c.Vendors["documine"]
	ref, err := v.Submit(ctx, vendors.Document{ID: "d1", Filename: "a.pdf", ContentType: "application/pdf", Size: 9,
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("%PDF-1.7\n")), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	for look := 1; ; look++ {
		pr, err := v.Check(ctx, ref)
		if err != nil || pr.Failed || look > 10 {
			t.Fatalf("look %d: %+v %v", look, pr, err)
		}
		if pr.Done {
			break
		}
	}
	res, err := v.Result(ctx, ref)
	if err != nil || len(res.Fields) == 0 || res.Text == "" || len(res.Artifacts) != 1 {
		t.Fatalf("result %+v %v", res, err)
	}
}

func TestDocuMineShapeProblems(t *testing.T) {
	_, problems := plan(t, "vendors:\n  documine:\n    api:\n      status: {path: /api/files, done_values: [OK], failed_values: [ok]}\n      result_mode: zip\n")
	var got []string
	for _, p := range problems {
		got = append(got, p.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`vendors.documine.api.status.path: "/api/files" must contain {fileId}`,
		`vendors.documine.api.status.failed_values: "ok" is also in done_values`,
		`vendors.documine.api.result_mode: "zip" is not one of components, package`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems do not say %q:\n%s", want, all)
		}
	}
}

// Gini's sandbox keeps its documents in the state directory: a document submitted before a
// restart is still known to the sandbox after it.
func TestGiniSandboxOutlivesRestart(t *testing.T) {
	p, problems := plan(t, "vendors:\n  laigo: {enabled: false}\n  allspark: {enabled: false}\n  documine: {enabled: false}\n  cradl: {enabled: false}\n")
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	ctx := context.Background()
	bc := catalog.BuildConfig{Logger: slog.New(slog.DiscardHandler), PublicURL: "http://127.0.0.1:1", StateDir: t.TempDir()}
	c, err := catalog.Build(ctx, p, bc)
	if err != nil {
		t.Fatal(err)
	}
	doc := vendors.Document{ID: "d1", Filename: "a.pdf", ContentType: "application/pdf", Size: 9,
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("%PDF-1.7\n")), nil
		}}
	ref, err := c.Vendors["gini"].Submit(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	if _, err := os.Stat(filepath.Join(bc.StateDir, "gini", "documents.jsonl")); err != nil {
		t.Fatalf("no journal in the state directory: %v", err)
	}

	c, err = catalog.Build(ctx, p, bc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Vendors["gini"].Check(ctx, ref); err != nil {
		t.Fatalf("the restarted sandbox does not know the document: %v", err)
	}
}

// A sandbox given a state directory keeps its documents there: a catalog built again on the same
// directory (ingest restarted) still knows the document in flight, in the vendor's own
// subdirectory.
func TestSandboxStateOutlivesTheCatalog(t *testing.T) {
	off := "  laigo: {enabled: false}\n  gini: {enabled: false}\n  allspark: {enabled: false}\n  documine: {enabled: false}\n"
	p, problems := plan(t, "vendors:\n  cradl:\n    sandbox_pending_polls: 1\n"+off)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	ctx := context.Background()
	dir := t.TempDir()
	build := func() *catalog.Catalog {
		c, err := catalog.Build(ctx, p, catalog.BuildConfig{PublicURL: "http://127.0.0.1:1", StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := build()
	ref, err := c.Vendors["cradl"].Submit(ctx, vendors.Document{ID: "d1", Filename: "a.pdf", ContentType: "application/pdf", Size: 9,
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("%PDF-1.7\n")), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if pr, err := c.Vendors["cradl"].Check(ctx, ref); err != nil || pr.Done {
		t.Fatalf("first check: %+v %v; want pending", pr, err)
	}
	c.Close(ctx)
	if _, err := os.Stat(filepath.Join(dir, "cradl", "state.jsonl")); err != nil {
		t.Fatalf("no state in the vendor's directory: %v", err)
	}

	c = build()
	defer c.Close(ctx)
	if pr, err := c.Vendors["cradl"].Check(ctx, ref); err != nil || !pr.Done || pr.Failed {
		t.Fatalf("check after the restart: %+v %v; want done", pr, err)
	}
}

// With a state directory the DocuMine sandbox keeps its dossier there: a catalog built again on
// it, as ingest restarted, still knows a document in flight and finishes it.
func TestSandboxDocuMineOutlivesRestart(t *testing.T) {
	off := "  laigo: {enabled: false}\n  gini: {enabled: false}\n  allspark: {enabled: false}\n  cradl: {enabled: false}\n"
	p, problems := plan(t, "vendors:\n  documine:\n    sandbox_pending_polls: 2\n"+off)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	ctx := context.Background()
	dir := t.TempDir()
	build := func() *catalog.Catalog {
		c, err := catalog.Build(ctx, p, catalog.BuildConfig{Logger: slog.New(slog.DiscardHandler),
			PublicURL: "http://127.0.0.1:1", StateDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := build()
	ref, err := c.Vendors["documine"].Submit(ctx, vendors.Document{ID: "d1", Filename: "a.pdf", ContentType: "application/pdf", Size: 9,
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader("%PDF-1.7\n")), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if pr, err := c.Vendors["documine"].Check(ctx, ref); err != nil || pr.Done {
		t.Fatalf("first look: %+v %v", pr, err)
	}
	c.Close(ctx)
	if _, err := os.Stat(filepath.Join(dir, "documine", "dossier.jsonl")); err != nil {
		t.Fatalf("no journal in the vendor's state directory: %v", err)
	}

	c = build()
	defer c.Close(ctx)
	v := c.Vendors["documine"]
	if pr, err := v.Check(ctx, ref); err != nil || pr.Done {
		t.Fatalf("look after the restart: %+v %v, want pending (one look left)", pr, err)
	}
	if pr, err := v.Check(ctx, ref); err != nil || !pr.Done || pr.Failed {
		t.Fatalf("look after the restart: %+v %v, want done", pr, err)
	}
	if res, err := v.Result(ctx, ref); err != nil || len(res.Fields) == 0 {
		t.Fatalf("result after the restart: %+v %v", res, err)
	}
}
