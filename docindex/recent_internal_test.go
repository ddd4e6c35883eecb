package docindex

import (
	"fmt"
	"testing"

	"github.com/ingest-dev/ingest/events"
)

// A row is handed out once (the batch owns it until it commits), the oldest go first when the
// set is full, and clear empties it (the index was reset).
func TestRecentRows(t *testing.T) {
	c := newRecentRows(3)
	put := func(id string) { c.put(&row{doc: events.Document{ID: id}}) }
	for i := range 4 {
		put(fmt.Sprintf("d%d", i)) // d0 is evicted by d3
	}
	put("d3") // again: evicts nothing
	for id, want := range map[string]bool{"d0": false, "d1": true, "d2": true, "d3": true} {
		if got := c.take(id) != nil; got != want {
			t.Errorf("take(%s) found a row: %v, want %v", id, got, want)
		}
	}
	if c.take("d1") != nil {
		t.Error("a row taken is handed out again")
	}
	put("d1")
	c.clear()
	if c.take("d1") != nil || len(c.rows) != 0 {
		t.Error("rows left after clear")
	}
}
