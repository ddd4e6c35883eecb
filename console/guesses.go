package console

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// guesses limits wrong API keys at sign-in per client address: ten at once, then one every six
// seconds. The keys are far too long to guess; what this stops is a script filling the log
// with warnings and the CPU with digests, and it tells an operator what such a script looks
// like (429 and a log line per wrong key it is still allowed).
type guesses struct {
	now func() time.Time
	mu  sync.Mutex
	per map[string]*rate.Limiter
}

const (
	guessBurst     = 10
	guessEvery     = 6 * time.Second
	guessAddresses = 10000 // addresses remembered; past it, those with their whole allowance are forgotten
)

func newGuesses(now func() time.Time) *guesses {
	return &guesses{now: now, per: map[string]*rate.Limiter{}}
}

// wait is how long addr must wait before its next sign-in is looked at (0: now).
func (g *guesses) wait(addr string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.per[addr]
	if l == nil {
		return 0
	}
	tokens := l.TokensAt(g.now())
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) * float64(guessEvery))
}

// wrong counts a wrong key from addr.
func (g *guesses) wrong(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	l := g.per[addr]
	if l == nil {
		if len(g.per) >= guessAddresses {
			g.forget(now)
		}
		l = rate.NewLimiter(rate.Every(guessEvery), guessBurst)
		g.per[addr] = l
	}
	l.AllowN(now, 1)
}

// forget drops the addresses whose allowance is whole again, and all of them if that is not
// enough: the map stays bounded whatever a crowd of addresses does.
func (g *guesses) forget(now time.Time) {
	for addr, l := range g.per {
		if l.TokensAt(now) >= guessBurst {
			delete(g.per, addr)
		}
	}
	if len(g.per) >= guessAddresses {
		clear(g.per)
	}
}
