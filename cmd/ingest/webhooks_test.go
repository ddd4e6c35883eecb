package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/events/eventstest"
)

// replay and webhooks find the running service and drive its subscriptions: a dead letter is
// delivered again, a replay re-sends with the same webhook-ids.
func TestWebhookCommands(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	var mu sync.Mutex
	var ids []string
	rv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if refuse.Load() {
			http.Error(w, "not today", http.StatusBadRequest)
			return
		}
		mu.Lock()
		ids = append(ids, r.Header.Get("webhook-id"))
		mu.Unlock()
	}))
	defer rv.Close()
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), ids...) }

	ctx, cfgPath, _ := runningService(t, "routes: []\nsubscriptions:\n  - name: hook\n    url: "+rv.URL+"\n    events: [received]\n"+
		"    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n    max_attempts: 1\n    allow_private_targets: true\n", 60*time.Second)

	var out, errOut bytes.Buffer
	pdf := writeFile(t, "scan.pdf", "%PDF-1.4\nsome pdf\n")
	if code := run(ctx, []string{"submit", pdf, "--config", cfgPath}, &out, &errOut); code != 0 {
		t.Fatalf("submit: %s", errOut.String())
	}
	var sub struct{ ID string }
	_ = json.Unmarshal(out.Bytes(), &sub)
	eventID := sub.ID + ".received"

	var letters struct {
		DeadLetters []struct {
			EventID    string `json:"event_id"`
			LastStatus int    `json:"last_status"`
		} `json:"dead_letters"`
	}
	eventstest.WaitFor(t, 10*time.Second, "the dead letter", func() bool {
		out.Reset()
		run(ctx, []string{"webhooks", "dead-letters", "hook", "--config", cfgPath}, &out, &errOut)
		return json.Unmarshal(out.Bytes(), &letters) == nil && len(letters.DeadLetters) == 1
	})
	if letters.DeadLetters[0].EventID != eventID || letters.DeadLetters[0].LastStatus != 400 {
		t.Fatalf("dead letters: %s", out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"webhooks", "attempts", "hook", eventID, "--config", cfgPath}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "not today") {
		t.Fatalf("attempts: exit %d %s %s", code, out.String(), errOut.String())
	}

	refuse.Store(false)
	out.Reset()
	if code := run(ctx, []string{"webhooks", "redeliver", "hook", eventID, "--config", cfgPath}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "delivered") {
		t.Fatalf("redeliver: exit %d %s %s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(ctx, []string{"replay", "--subscription", "hook", "--since", "1h", "--config", cfgPath}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), `"delivered": 1`) {
		t.Fatalf("replay: exit %d %s %s", code, out.String(), errOut.String())
	}
	if got := seen(); len(got) != 2 || got[0] != eventID || got[1] != eventID {
		t.Fatalf("receiver saw %v", got)
	}
	out.Reset()
	if code := run(ctx, []string{"webhooks", "--config", cfgPath}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"state": "active"`) {
		t.Fatalf("list: exit %d %s", code, out.String())
	}
	errOut.Reset()
	if code := run(ctx, []string{"replay", "--subscription", "nope", "--since", "1h", "--config", cfgPath}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "no such webhook subscription") {
		t.Fatalf("unknown subscription: exit %d %s", code, errOut.String())
	}
	for _, args := range [][]string{{"replay"}, {"replay", "--since", "2h"}, {"webhooks", "enable"}, {"webhooks", "redeliver", "a"}, {"webhooks", "frob"}} {
		var o, e bytes.Buffer
		if code := run(ctx, args, &o, &e); code != 2 || !strings.Contains(e.String(), "Usage:") {
			t.Errorf("%v: exit %d, %q", args, code, e.String())
		}
	}
}
