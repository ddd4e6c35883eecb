package service_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/service"
)

// A second ingest on the same data_dir (other ports) is refused at once, naming the process that
// holds it, and the first keeps running with its runtime file.
func TestSecondInstanceOnTheSameDataDirIsRefused(t *testing.T) {
	cfg := testConfig(t)
	s := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begun := time.Now()
	second, err := service.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		stop(t, second)
		t.Fatal("a second instance started on the same data_dir")
	}
	want := fmt.Sprintf("is in use by another ingest (pid %d)", os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q; want it to say %q", err, want)
	}
	if took := time.Since(begun); took > 5*time.Second {
		t.Errorf("the refusal took %s", took)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "runtime.json")); err != nil {
		t.Fatalf("the first instance's runtime file is gone: %v", err)
	}
	if res, _ := get(t, s.HTTPAddr(), "/readyz"); res.StatusCode != 200 {
		t.Fatalf("the first instance is not ready any more: %d", res.StatusCode)
	}
	// Once the first has stopped, the data_dir is free again.
	stop(t, s)
	third := start(t, cfg)
	stop(t, third)
}

// A data_dir that cannot be written fails the start at once with a sentence that says so, before
// the embedded NATS server is started on it.
func TestUnwritableDataDirFailsAtOnce(t *testing.T) {
	cfg := testConfig(t)
	if os.Geteuid() == 0 {
		// Permissions do not stop root; sysfs refuses new files to everyone.
		cfg.DataDir = "/sys/kernel"
	} else {
		cfg.DataDir = filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(cfg.DataDir, 0o500); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	begun := time.Now()
	s, err := service.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		stop(t, s)
		t.Fatal("started on a data_dir it cannot write")
	}
	if !strings.Contains(err.Error(), "cannot be written") || !strings.Contains(err.Error(), cfg.DataDir) {
		t.Fatalf("error %q", err)
	}
	if took := time.Since(begun); took > 5*time.Second {
		t.Errorf("the refusal took %s", took)
	}
}
