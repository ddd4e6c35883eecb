package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest"
	"github.com/ingest-dev/ingest/config"
)

func noEnv(string) (string, bool) { return "", false }

func envMap(m map[string]string) config.LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// The shipped config.yaml claims to show every default; hold it to that.
func TestShippedConfigIsTheDefault(t *testing.T) {
	cfg, err := config.Parse(ingest.DefaultConfigYAML(), "config.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	// The vendors' sections are their packages' (see the catalog's test of the same).
	cfg.Origin, cfg.Vendors, cfg.Routes = nil, nil, nil
	if want := config.Default(); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config.yaml differs from config.Default():\n got %+v\nwant %+v", cfg, want)
	}
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	cfg, err := config.Parse(nil, "empty", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Origin = nil
	if !reflect.DeepEqual(cfg, config.Default()) {
		t.Fatal("empty file did not give defaults")
	}
}

func TestParseValues(t *testing.T) {
	yml := `
data_dir: /var/lib/ingest
nats:
  url: ${NATS_URL}
  stream:
    max_age: 7d
    replicas: ${REPLICAS}
http:
  api_keys: ["${KEY_A}", "${KEY_B:-fallback-key-0123456789}"]
  max_document_bytes: 10MiB
  max_files: 3
`
	cfg, err := config.Parse([]byte(yml), "t", envMap(map[string]string{
		"NATS_URL": "nats://a:4222,nats://b:4222", "REPLICAS": "3", "KEY_A": "key-a-0123456789abcdef",
	}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"data_dir", cfg.DataDir, "/var/lib/ingest"},
		{"nats.url", cfg.NATS.URL, "nats://a:4222,nats://b:4222"},
		{"max_age", cfg.NATS.Stream.MaxAge.Std(), 7 * 24 * time.Hour},
		{"replicas from env is a number", cfg.NATS.Stream.Replicas, 3},
		{"api_keys", cfg.HTTP.APIKeys, []string{"key-a-0123456789abcdef", "fallback-key-0123456789"}},
		{"max_document_bytes", cfg.HTTP.MaxDocumentBytes.Int64(), int64(10 << 20)},
		{"max_files", cfg.HTTP.MaxFiles, 3},
		{"untouched default", cfg.HTTP.Listen, "127.0.0.1:8080"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestParseProblems(t *testing.T) {
	cases := []struct {
		name string
		yml  string
		env  map[string]string
		want []string // substrings, each must appear in the error
	}{
		{"unknown top-level key with suggestion", "data_dri: x\n", nil,
			[]string{`line 1: unknown key "data_dri"`, `did you mean "data_dir"?`}},
		{"unknown nested key names its path and line", "http:\n  listen: 127.0.0.1:1\n  max_file: 3\n", nil,
			[]string{`line 3: unknown key "http.max_file"`, `did you mean "max_files"?`}},
		{"unrelated key lists the known ones", "nats:\n  stream:\n    colour: blue\n", nil,
			[]string{`unknown key "nats.stream.colour"`, "known keys here: duplicate_window, max_age, replicas"}},
		{"bad type names the key", "http:\n  max_files: lots\n", nil,
			[]string{"line 2: http.max_files:", "want a whole number"}},
		{"bad duration", "shutdown_timeout: soon\n", nil,
			[]string{`line 1: shutdown_timeout: "soon" is not a duration`}},
		{"bad size", "http:\n  max_document_bytes: 64 parsecs\n", nil,
			[]string{`line 2: http.max_document_bytes: "64 parsecs" is not a size`}},
		{"list where a mapping belongs", "http: [a, b]\n", nil,
			[]string{"line 1: http:", "want a mapping of keys"}},
		{"missing secret from the environment", "nats:\n  url: nats://x:4222\n  user: svc\n  password: ${NATS_PASSWORD}\n", nil,
			[]string{"line 4: nats.password: environment variable NATS_PASSWORD is not set"}},
		{"missing api key from the environment", "http:\n  api_keys: [\"${INGEST_API_KEY}\"]\n", nil,
			[]string{"http.api_keys[0]: environment variable INGEST_API_KEY is not set"}},
		{"syntax error", "http:\n  listen: [unclosed\n", nil,
			[]string{"line"}},
		{"top level is not a mapping", "- a\n- b\n", nil,
			[]string{"top level must be a mapping"}},
		{"imap after with an unknown word", "sources:\n  imap:\n    - {name: a, host: h, username: u, password: p, after: archive}\n", nil,
			[]string{`line 3: sources.imap[0].after: "archive" is not one of`}},
		{"unknown key inside a source", "sources:\n  imap:\n    - {name: a, host: h, usernme: u}\n", nil,
			[]string{`line 3: unknown key "sources.imap[0].usernme" (did you mean "username"?)`}},
		{"vendor section keys are the vendor's", "vendors:\n  gini:\n    client_id: ${GINI_ID}\n", nil,
			[]string{"line 3: vendors.gini.client_id: environment variable GINI_ID is not set"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(c.yml), "test.yaml", envMap(c.env))
			if err == nil {
				t.Fatal("no error")
			}
			var p *config.Problems
			if !errors.As(err, &p) {
				t.Fatalf("error %T is not *config.Problems: %v", err, err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestSources(t *testing.T) {
	yml := `
sources:
  imap:
    - name: invoices
      host: imap.example.com
      username: invoices@example.com
      oauth2: {token_url: "https://login.example.com/token", client_id: c, refresh_token: "${RT}"}
      vendor: gini, laigo
      after: {move: Done}
      filters: {subject: "(?i)rechnung", filename: "*.pdf", min_size: 1KiB}
  webdav:
    - name: scans
      url: https://cloud.example.com/remote.php/dav/files/scanner/in/
      username: scanner
      password: pw
      vendor: [allspark]
`
	cfg, err := config.Parse([]byte(yml), "t", envMap(map[string]string{"RT": "refresh-1"}))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Sources.IMAP[0]
	if m.Port != 0 || m.TLS != "implicit" || m.Mailbox != "INBOX" || m.After != (config.After{Action: "move", Target: "Done"}) ||
		len(m.Vendor) != 2 || m.Vendor[1] != "laigo" || m.OAuth2.RefreshToken != "refresh-1" || m.Filters.MinSize != 1024 {
		t.Fatalf("imap %+v", m)
	}
	w := cfg.Sources.WebDAV[0]
	if w.After != (config.After{Action: "move", Target: "processed/"}) || w.PollInterval.Std() != 30*time.Second || len(w.Vendor) != 1 {
		t.Fatalf("webdav %+v", w)
	}
}

func TestDollarEscape(t *testing.T) {
	cfg, err := config.Parse([]byte("http:\n  api_keys: [\"pa$$word-0123456789abc\"]\n"), "t", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.HTTP.APIKeys[0]; got != "pa$word-0123456789abc" {
		t.Fatalf("got %q", got)
	}
}

func TestQuotedEnvStaysString(t *testing.T) {
	// A quoted value stays a string after expansion, even when it looks like a number.
	cfg, err := config.Parse([]byte("sources:\n  http_drop:\n    name: \"${N}\"\n"), "t", envMap(map[string]string{"N": "a1"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sources.HTTPDrop.Name != "a1" {
		t.Fatalf("name = %q", cfg.Sources.HTTPDrop.Name)
	}
}

func TestByteSizeAndDuration(t *testing.T) {
	sizes := map[string]int64{"0": 0, "1024": 1024, "64MiB": 64 << 20, "1KB": 1000, "2 GiB": 2 << 30, "5B": 5}
	for in, want := range sizes {
		got, err := config.ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "MiB", "1.5MiB", "99999999999TiB", "12 apples"} {
		if _, err := config.ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
	durs := map[string]time.Duration{"30d": 30 * 24 * time.Hour, "90s": 90 * time.Second, "1h30m": 90 * time.Minute}
	for in, want := range durs {
		got, err := config.ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-5s", "d", "1.5d", "soon"} {
		if _, err := config.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(ingest.DefaultConfigYAML())
	f.Add([]byte("http: [a, b]\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Add([]byte("nats:\n  url: ${X:-nats://h:1}\n  stream: {max_age: 3d}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data, "fuzz", noEnv)
		if err != nil {
			var p *config.Problems
			if !errors.As(err, &p) || len(p.List) == 0 {
				t.Fatalf("Parse failed without saying what is wrong: %v", err)
			}
			return
		}
		// What Parse accepts, Validate can look at without trouble, and every problem it finds
		// names its key.
		var problems []config.Problem
		cfg.Validate([]string{"gini"}, config.Collect(&problems))
		for _, p := range problems {
			if p.Key == "" || p.Message == "" {
				t.Fatalf("a problem without a key or words: %+v", p)
			}
		}
	})
}

// A relative data_dir belongs to the file that names it, whatever the working directory: the CLI
// given --config finds the service from anywhere.
func TestRelativeDataDirIsBesideTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("data_dir: ./state\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "state") {
		t.Fatalf("data_dir %q, want %q", cfg.DataDir, filepath.Join(dir, "state"))
	}
	abs := filepath.Join(t.TempDir(), "elsewhere")
	_ = os.WriteFile(path, []byte("data_dir: "+abs+"\n"), 0o600)
	if cfg, _ := config.Load(path); cfg.DataDir != abs {
		t.Fatalf("absolute data_dir changed to %q", cfg.DataDir)
	}
}

func TestIndexSettings(t *testing.T) {
	cfg := config.Default()
	cfg.Index.Path = t.TempDir() // a directory, not a file
	cfg.Index.CacheSize = 1000
	var problems []config.Problem
	cfg.Validate([]string{"gini"}, config.Collect(&problems))
	got := map[string]string{}
	for _, p := range problems {
		got[p.Key] = p.Message
	}
	if !strings.Contains(got["index.path"], "is a directory") || !strings.Contains(got["index.cache_size"], "between 1MiB and 4GiB") || len(got) != 2 {
		t.Errorf("problems %v", got)
	}
	cfg.Index.Enabled = false // a disabled index's settings do not matter
	problems = nil
	cfg.Validate([]string{"gini"}, config.Collect(&problems))
	if len(problems) != 0 {
		t.Errorf("disabled index: %v", problems)
	}
}
