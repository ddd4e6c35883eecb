package webhooks

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
)

func TestSignMatchesTheReferenceLibrary(t *testing.T) {
	secrets := []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="}
	var keys [][]byte
	for _, s := range secrets {
		k, err := config.DecodeWebhookSecret(s)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	at := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	got := strings.Split(Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body, keys), " ")
	for i, s := range secrets {
		wh, _ := standardwebhooks.NewWebhook(s)
		want, _ := wh.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body)
		if got[i] != want {
			t.Fatalf("signature %d = %s, want %s", i, got[i], want)
		}
	}
	// The example from the Standard Webhooks specification.
	if got[0] != "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=" {
		t.Fatalf("spec example: %s", got[0])
	}
	h := http.Header{}
	h.Set(HeaderID, "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set(HeaderTimestamp, "1614265330")
	h.Set(HeaderSignature, strings.Join(got, " "))
	wh, _ := standardwebhooks.NewWebhook(secrets[1])
	if err := wh.VerifyIgnoringTimestamp(body, h); err != nil {
		t.Fatalf("the second secret alone does not verify: %v", err)
	}
	wrong, _ := standardwebhooks.NewWebhook("whsec_dGhpcmQtc2VjcmV0LW5vYm9keS1jb25maWd1cmVk")
	if err := wrong.VerifyIgnoringTimestamp(body, h); err == nil {
		t.Fatal("a secret we did not sign with verified")
	}
}

func TestGuard(t *testing.T) {
	cases := map[string]bool{
		"93.184.215.14:443": true, "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443": true, "8.8.8.8:80": true,
		"127.0.0.1:80": false, "10.1.2.3:80": false, "172.20.0.1:80": false, "192.168.1.1:80": false,
		"169.254.169.254:80": false, "100.64.0.1:80": false, "0.0.0.0:80": false, "224.0.0.1:80": false,
		"[::1]:80": false, "[fe80::1]:80": false, "[fd00::1]:80": false, "[::ffff:127.0.0.1]:80": false,
		"[::ffff:10.0.0.1]:80": false, "[64:ff9b::a00:1]:80": false, "[::]:80": false, "255.255.255.255:80": false,
		"not-an-address": false,
	}
	for addr, ok := range cases {
		if err := guard("tcp", addr, nil); (err == nil) != ok {
			t.Errorf("guard(%s) = %v, want allowed=%v", addr, err, ok)
		}
	}
	if !allowedIP(netip.MustParseAddr("1.1.1.1")) {
		t.Fatal("public address refused")
	}
}

func TestSubjectMatches(t *testing.T) {
	cases := []struct {
		p, s string
		want bool
	}{
		{"ingest.document.completed.gini", "ingest.document.completed.gini", true},
		{"ingest.document.completed.gini", "ingest.document.completed.laigo", false},
		{"ingest.document.*.gini", "ingest.document.failed.gini", true},
		{"ingest.document.>", "ingest.document.failed.gini", true},
		{"ingest.document.completed.>", "ingest.document.completed", false},
		{"ingest.document.completed", "ingest.document.completed.gini", false},
	}
	for _, c := range cases {
		if got := subjectMatches(c.p, c.s); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

func TestScheduleAndRetryAfter(t *testing.T) {
	for n := 1; n < 12; n++ {
		step := DefaultSchedule[min(n, len(DefaultSchedule)-1)]
		for range 50 {
			if d := delayAfter(nil, n); d < step*4/5 || d > step*6/5 {
				t.Fatalf("delay after attempt %d = %s, want %s ±20%%", n, d, step)
			}
		}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{"120": 2 * time.Minute, "0": 0, "999999999": maxRetryAfter,
		now.Add(30 * time.Second).Format(http.TimeFormat): 30 * time.Second}
	for v, want := range cases {
		if got, ok := retryAfter(http.Header{"Retry-After": {v}}, now); !ok || got != want {
			t.Errorf("Retry-After %q = %s, %v; want %s", v, got, ok, want)
		}
	}
	for _, v := range []string{"", "soon", "-5"} {
		if _, ok := retryAfter(http.Header{"Retry-After": {v}}, now); ok {
			t.Errorf("Retry-After %q accepted", v)
		}
	}
}

// config names the event types a subscription may choose; they must be the events' kinds.
func TestConfigEventTypesAreKinds(t *testing.T) {
	for _, e := range config.EventTypes {
		if _, err := (events.Names{Namespace: "x"}).Subject(events.Kind(e), "q"); err != nil {
			t.Errorf("config event type %q is not an event kind", e)
		}
	}
	for _, k := range []events.Kind{events.Received, events.Submitted, events.Completed, events.Failed, events.Rejected, events.Retried} {
		found := false
		for _, e := range config.EventTypes {
			found = found || e == string(k)
		}
		if !found {
			t.Errorf("event kind %s cannot be chosen in a subscription", k)
		}
	}
}
