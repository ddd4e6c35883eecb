package console

import (
	"fmt"
	"testing"
	"time"
)

// The addresses remembered stay bounded: past the bound, those whose allowance is whole again
// are forgotten, and when none is, all of them.
func TestGuessesStayBounded(t *testing.T) {
	now := time.Unix(0, 0)
	g := newGuesses(func() time.Time { return now })
	for i := range guessAddresses {
		g.wrong(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	g.wrong("192.0.2.1") // none is whole again: all forgotten
	if len(g.per) != 1 || g.wait("10.0.0.1") != 0 {
		t.Fatalf("%d addresses remembered after the bound", len(g.per))
	}
	for i := range guessAddresses - 1 {
		g.wrong(fmt.Sprintf("10.1.%d.%d", i/256, i%256))
		g.wrong(fmt.Sprintf("10.1.%d.%d", i/256, i%256))
	}
	now = now.Add(guessEvery) // 192.0.2.1's allowance is whole again, the others' not
	for range guessBurst {
		g.wrong("198.51.100.7")
	}
	if _, kept := g.per["192.0.2.1"]; kept || len(g.per) != guessAddresses {
		t.Fatalf("%d addresses remembered; the whole one kept: %v", len(g.per), kept)
	}
	if g.wait("198.51.100.7") == 0 {
		t.Fatal("an address with ten wrong keys need not wait")
	}
}
