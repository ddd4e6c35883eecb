package service_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/service"
)

// `ingest config check` and `ingest serve` run the same checks: a configuration serve refuses is
// refused by check with the same words and lines, in one pass, before anything starts (no
// data_dir, no NATS, no simulators). One case per rule, across the configuration's own keys, each
// vendor's section and each source's watcher.
func TestCheckIsWhatServeRuns(t *testing.T) {
	imap := "sources:\n  imap:\n    - name: inbox\n      host: %s\n      username: u\n      password: p\n"
	cases := []struct {
		name string
		yml  string
		want []string // each must appear in the error
	}{
		{"user without password", "nats:\n  url: nats://x:4222\n  user: svc\n",
			[]string{"line 1: nats.password: is required when nats.user is set"}}, // not in the file: its section's line
		{"weak api key", "http:\n  api_keys: [short]\n",
			[]string{"line 2: http.api_keys[0]: is too easy to guess (about 21 bits; at least 128 needed)"}},
		{"listen port out of range", "http:\n  listen: 127.0.0.1:99999\n",
			[]string{"line 2: http.listen:", "port must be a number from 0 to 65535"}},
		{"several problems are all listed", "log:\n  level: loud\nhttp:\n  max_files: 0\n  listen: nowhere\nnats:\n  stream:\n    duplicate_window: 10s\n",
			[]string{"4 problems", `line 2: log.level: "loud"`, "line 4: http.max_files", "line 5: http.listen", "line 8: nats.stream.duplicate_window: must be at least 2m"}},
		{"bad nats url", "nats:\n  url: http://x\n",
			[]string{"line 2: nats.url", "scheme must be nats"}},
		{"missing credentials file", "nats:\n  url: nats://x:4222\n  credentials_file: /nonexistent/x.creds\n",
			[]string{"line 3: nats.credentials_file: cannot read"}},
		{"replicas", "nats:\n  stream:\n    replicas: 7\n",
			[]string{"line 3: nats.stream.replicas: must be between 1 and 5"}},
		{"memory limit", "memory_limit: 1MiB\n",
			[]string{"line 1: memory_limit:", "too little", "or 0 for no limit"}},
		{"heartbeat", "heartbeat_ttl: 1s\n",
			[]string{"line 1: heartbeat_ttl: must be between 2s and 5m"}},
		{"in-doubt timeout", "dispatch:\n  in_doubt_timeout: 10s\n",
			[]string{"line 2: dispatch.in_doubt_timeout: must be at least 1m"}},
		{"production vendor without credentials", "vendors:\n  laigo:\n    sandbox: false\n",
			[]string{"line 2: vendors.laigo.client_id: is required when sandbox is false", "vendors.laigo.client_secret"}},
		{"gini needs one auth mode", "vendors:\n  gini:\n    sandbox: false\n    client_id: a\n    client_secret: b\n",
			[]string{"line 2: vendors.gini: set either user_identifier"}},
		{"unknown vendor", "vendors:\n  abbyy:\n    enabled: true\n",
			[]string{`line 2: vendors.abbyy: there is no vendor "abbyy" (known: laigo, gini, allspark, documine, cradl)`}},
		{"unknown vendor key", "vendors:\n  laigo:\n    rate_limit: 2\n    tenant: x\n",
			[]string{`line 4: unknown key "vendors.laigo.tenant"`}},
		{"vendor key of the wrong type", "vendors:\n  gini:\n    concurrency: many\n",
			[]string{"line 3: vendors.gini.concurrency:", "want a whole number"}},
		{"weak callback token", "vendors:\n  allspark:\n    callback_token: abc\n",
			[]string{"line 3: vendors.allspark.callback_token: is too easy to guess", "gen-token"}},
		{"bad callback cidr", "vendors:\n  allspark:\n    callback_allow_cidrs: [10.0.0.0/33]\n",
			[]string{"line 3: vendors.allspark.callback_allow_cidrs[0]"}},
		{"status both done and failed", "vendors:\n  allspark:\n    done_statuses: [completed, failed]\n",
			[]string{`line 3: vendors.allspark.done_statuses: "failed" is also one of failed_statuses`}},
		{"cradl mode", "vendors:\n  cradl:\n    mode: batch\n",
			[]string{`line 3: vendors.cradl.mode: "batch" is not one of predictions, workflow, email`}},
		{"cradl secret without token", "vendors:\n  cradl:\n    webhook_secret: s3cr3t-s3cr3t-s3cr3t\n",
			[]string{"line 3: vendors.cradl.webhook_secret: needs callback_token"}},
		{"poll delays out of order", "vendors:\n  gini:\n    poll: {initial: 2m, max: 1m}\n",
			[]string{"line 3: vendors.gini.poll: want 0 < initial ≤ max ≤ deadline"}},
		{"route to a disabled vendor", "vendors:\n  documine:\n    enabled: false\nroutes:\n  - name: contracts\n    vendors: [documine]\n",
			[]string{`line 6: routes[0].vendors: vendor "documine" is not enabled`}},
		{"route with a bad glob and no vendors", "routes:\n  - name: x\n    match: {filename: \"[\"}\n",
			[]string{"line 3: routes[0].match.filename", "routes[0].vendors: names no vendor"}},
		{"imap in clear text to another machine", strings.Replace(imap, "%s", "mail.example.com", 1) + "      tls: none\n",
			[]string{`line 7: sources.imap[0].tls: none sends the password in clear text and is allowed only for a server on this machine`}},
		{"imap idle restart too long", strings.Replace(imap, "%s", "mail.example.com", 1) + "      idle_restart: 29m\n",
			[]string{"line 7: sources.imap[0].idle_restart: must be under 29m0s"}},
		{"imap bad flag keyword", strings.Replace(imap, "%s", "mail.example.com", 1) + "      after: {flag: \"bad word\"}\n",
			[]string{`line 7: sources.imap[0].after: flag needs a keyword`}},
		{"imap move to itself", strings.Replace(imap, "%s", "mail.example.com", 1) + "      after: {move: INBOX}\n",
			[]string{`line 7: sources.imap[0].after: move to "INBOX", the watched mailbox itself`}},
		{"imap without credentials", "sources:\n  imap:\n    - name: invoices\n      host: mail.example.com\n      username: u\n",
			[]string{"line 3: sources.imap[0]: a password or oauth2 settings are required"}},
		{"imap bad regex and unknown vendor", "sources:\n  imap:\n    - {name: a, host: h, username: u, password: p, vendor: abbyy, filters: {subject: \"(\"}}\n",
			[]string{"line 3: sources.imap[0].filters.subject", `vendor "abbyy" is not enabled`}},
		{"webdav needs an http url and folder after", "sources:\n  webdav:\n    - {name: scans, url: ftp://x, after: seen}\n",
			[]string{`line 3: sources.webdav[0].url: "ftp://x" must be an http:// or https:// URL`, `sources.webdav[0].after: "seen" must be move, delete or keep`}},
		{"webdav move out of the folder", "sources:\n  webdav:\n    - {name: scans, url: \"http://h/dav/\", after: {move: ../x}}\n",
			[]string{`line 3: sources.webdav[0].after: "../x" must not contain`}},
		{"duplicate source names", "sources:\n  webdav:\n    - {name: s, url: \"http://h/dav/\"}\n    - {name: s, url: \"http://h/dav2/\"}\n",
			[]string{`line 4: sources.webdav[1].name: "s" is used twice`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(c.yml), "test.yaml", func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatalf("the YAML itself is fine, Parse says: %v", err)
			}
			dataDir := filepath.Join(t.TempDir(), "data")
			cfg.DataDir, cfg.NATS.Embedded.Listen = dataDir, "127.0.0.1:0"
			if cfg.HTTP.Listen == config.Default().HTTP.Listen {
				cfg.HTTP.Listen = "127.0.0.1:0"
			}
			checked := service.Check(cfg)
			var p *config.Problems
			if !errors.As(checked, &p) {
				t.Fatalf("check: %v; want *config.Problems", checked)
			}
			for _, w := range c.want {
				if !strings.Contains(checked.Error(), w) {
					t.Errorf("check does not say %q:\n%v", w, checked)
				}
			}
			s, served := service.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if served == nil {
				stop(t, s)
				t.Fatal("serve started with a configuration check refuses")
			}
			// A refused weak secret comes with a freshly generated one to use instead.
			suggestion := regexp.MustCompile(`such as [A-Za-z0-9_-]{43} `)
			if suggestion.ReplaceAllString(served.Error(), "") != suggestion.ReplaceAllString(checked.Error(), "") {
				t.Errorf("serve and check disagree:\nserve: %v\ncheck: %v", served, checked)
			}
			if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("serve touched data_dir before refusing the configuration (%v)", err)
			}
		})
	}
}
