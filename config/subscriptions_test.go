package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/config"
)

const goodSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestSubscriptionDefaultsAndValues(t *testing.T) {
	yml := `
subscriptions:
  - name: erp
    url: https://erp.example.com/hooks
    events: [completed, failed]
    secret: ${ERP_SECRET}
  - name: audit
    url: http://10.0.0.5:8080/in
    subjects: [ingest.document.completed.gini, ingest.document.*.laigo]
    secret: ["` + goodSecret + `", "${NEW_SECRET}"]
    headers: {X-Tenant: acme}
    timeout: 2s
    max_attempts: 3
    max_age: 1h
    format: cloudevents
    ordered: true
    allow_private_targets: true
    filters: {source_kind: imap}
`
	cfg, err := config.Parse([]byte(yml), "t", envMap(map[string]string{"ERP_SECRET": goodSecret, "NEW_SECRET": goodSecret}))
	if err != nil {
		t.Fatal(err)
	}
	var problems []config.Problem
	cfg.Validate([]string{"gini"}, config.Collect(&problems))
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	erp, audit := cfg.Subscriptions[0], cfg.Subscriptions[1]
	if erp.Timeout.Std() != 10*time.Second || erp.MaxAttempts != 8 || erp.MaxAge.Std() != 72*time.Hour || erp.Format != "json" ||
		erp.MaxInFlight != 16 || erp.Ordered || erp.AllowPrivateTargets || len(erp.Secret) != 1 || erp.Secret[0] != goodSecret {
		t.Fatalf("defaults: %+v", erp)
	}
	if len(audit.Secret) != 2 || audit.Headers["X-Tenant"] != "acme" || audit.Timeout.Std() != 2*time.Second || !audit.Ordered ||
		audit.Format != "cloudevents" || audit.Filters.SourceKind != "imap" || len(audit.Subjects) != 2 {
		t.Fatalf("values: %+v", audit)
	}
}

func TestSubscriptionProblems(t *testing.T) {
	base := "subscriptions:\n  - name: erp\n    url: https://erp.example.com/h\n    secret: " + goodSecret + "\n"
	cases := []struct {
		name string
		yml  string
		want []string
	}{
		{"unknown key", base + "    retries: 3\n", []string{`line 5: unknown key "subscriptions[0].retries"`}},
		{"bad duration", base + "    timeout: soon\n", []string{`line 5: subscriptions[0].timeout: "soon" is not a duration`}},
		{"secret from a missing variable", "subscriptions:\n  - name: a\n    url: https://x.example\n    secret: ${NOPE}\n",
			[]string{"line 4: subscriptions[0].secret: environment variable NOPE is not set"}},
		{"name not a token", strings.Replace(base, "name: erp", "name: ERP.x", 1), []string{`subscriptions[0].name: "ERP.x" must be`}},
		{"name twice", base + strings.Replace(base, "subscriptions:\n", "", 1), []string{`subscriptions[1].name: subscription "erp" is defined twice`}},
		{"url not http", strings.Replace(base, "https://erp.example.com/h", "ftp://erp.example.com/h", 1), []string{"subscriptions[0].url", "not an http(s) URL"}},
		{"url with credentials", strings.Replace(base, "https://erp", "https://u:p@erp", 1), []string{"must not carry a user or password"}},
		{"no secret", "subscriptions:\n  - name: a\n    url: https://x.example\n", []string{"subscriptions[0].secret: is required"}},
		{"secret without prefix", strings.Replace(base, goodSecret, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1), []string{"secret[0]: a webhook secret starts with whsec_"}},
		{"secret not base64", strings.Replace(base, goodSecret, "whsec_%%%", 1), []string{"is not base64"}},
		{"secret too short", strings.Replace(base, goodSecret, "whsec_YWJj", 1), []string{"the secret is 3 bytes"}},
		{"unknown event", base + "    events: [done]\n", []string{`"done" is not an event type`}},
		{"subject outside the namespace", base + "    subjects: [other.document.completed.x]\n", []string{"is not a document event subject under ingest.document."}},
		{"subject with a bad wildcard", base + "    subjects: [ingest.document.>.x]\n", []string{"is not a document event subject"}},
		{"timeout too short", base + "    timeout: 1ms\n", []string{"subscriptions[0].timeout: must be between 100ms and 5m"}},
		{"max_attempts zero", base + "    max_attempts: 0\n", []string{"subscriptions[0].max_attempts: must be between 1 and 100"}},
		{"max_age past the stream", base + "    max_age: 60d\n", []string{"subscriptions[0].max_age: must be at most nats.stream.max_age"}},
		{"unknown format", base + "    format: xml\n", []string{`subscriptions[0].format: "xml" is not one of json, cloudevents`}},
		{"reserved header", base + "    headers: {webhook-id: x}\n", []string{"webhook-id is set by the delivery itself"}},
		{"header with a newline", base + "    headers: {X-A: \"a\\nb\"}\n", []string{"the value of X-A must be one line"}},
		{"unknown route", base + "    filters: {route: nowhere}\n", []string{`there is no route "nowhere"`}},
		{"unknown source kind", base + "    filters: {source_kind: ftp}\n", []string{`"ftp" is not one of http, imap, webdav`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(c.yml), "test.yaml", noEnv)
			if err == nil {
				var problems []config.Problem
				cfg.Validate([]string{"gini"}, config.Collect(&problems))
				err = cfg.Problems(problems)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
