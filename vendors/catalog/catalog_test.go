package catalog_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/vendors"
	"github.com/ingest-dev/ingest/vendors/catalog"
)

func TestSandboxCatalog(t *testing.T) {
	var logs strings.Builder
	cfg := config.Default().Vendors
	c, err := catalog.Build(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range c.Vendors {
		names = append(names, n)
	}
	sort.Strings(names)
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
	cfg := config.Default().Vendors
	cfg.Laigo.Sandbox, cfg.Laigo.ClientID, cfg.Laigo.ClientSecret = false, "id", "secret"
	cfg.Gini.Enabled, cfg.Allspark.Enabled, cfg.DocuMine.Enabled, cfg.Cradl.Enabled = false, false, false, false
	c, err := catalog.Build(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if len(c.Vendors) != 1 || c.Vendors["laigo"] == nil || len(c.Sandboxes) != 0 {
		t.Fatalf("catalog %+v", c)
	}
	// Missing production credentials are the client's error, named by vendor.
	cfg.Laigo.ClientSecret = ""
	if _, err := catalog.Build(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "vendors.laigo") {
		t.Fatalf("err = %v", err)
	}
}
