package dispatch_test

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ingest-dev/ingest/dispatch"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/intake"
	"github.com/ingest-dev/ingest/vendors/gini"
	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
)

// The real Gini client against its simulator: two dispatchers at once, one of them stopped
// mid-run and replaced, tokens expiring along the way. The simulator's ledger proves every
// document reached Gini exactly once.
func TestExactlyOnceAgainstGiniSimulator(t *testing.T) {
	sim := ginisim.New(ginisim.Config{ClientID: "id", ClientSecret: "secret", Users: map[string]string{"svc": "pw"}, PendingPolls: 2})
	ts := httptest.NewServer(sim)
	defer ts.Close()
	client, err := gini.New(gini.Config{BaseURL: ts.URL, TokenURL: ts.URL + "/oauth/token", ClientID: "id", ClientSecret: "secret", Username: "svc", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, client)
	rules := []dispatch.Rule{{Name: "default", Vendors: []string{"gini"}}}
	first := r.dispatcher(rules, nil)
	r.dispatcher(rules, nil)
	r.poller(time.Hour)

	var docs []intake.Staged
	for i := range 30 {
		docs = append(docs, r.receive(fmt.Sprintf("scan-%d.pdf", i), pdf(fmt.Sprintf("page %d", i))))
		switch i {
		case 10:
			sim.Tokens.ExpireAll()
		case 15:
			first.kill() // mid-run: whatever it held is redelivered
			r.dispatcher(rules, nil)
		}
	}
	for _, st := range docs {
		doc := r.waitStatus(st.DocumentID, events.StatusCompleted)
		if n := sim.Ledger.Count(st.SHA256); n != 1 {
			t.Fatalf("%s reached Gini %d times", st.Filename, n)
		}
		if doc.Vendors["gini"].Ref == "" {
			t.Fatalf("no ref for %s", st.Filename)
		}
	}
	if got := len(sim.Ledger.All()); got != len(docs) {
		t.Fatalf("Gini holds %d documents, want %d", got, len(docs))
	}
}
