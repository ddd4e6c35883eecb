package simkit

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// Scaffold is the part every simulator server has: injected faults, expiring tokens, the upload
// ledger, the routes, and a count of requests per operation. A simulator embeds it and registers
// its handlers with Handle; what is the vendor's own (how it authenticates, what it answers) stays
// in the simulator.
type Scaffold struct {
	// Faults are served before the normal answer of the operation they are queued for.
	Faults *Faults
	// Tokens are the access tokens the simulator's token endpoint issues.
	Tokens *Tokens
	// Ledger records every upload the simulator accepted.
	Ledger *Ledger

	mux        *http.ServeMux
	drainLimit int64

	mu       sync.Mutex
	requests map[string]int
}

// NewScaffold returns a scaffold whose tokens last tokenTTL. drainLimit bounds how much of a
// request body is read before a fault is answered (the vendor's upload limit, with room).
func NewScaffold(tokenTTL time.Duration, drainLimit int64) *Scaffold {
	return &Scaffold{
		Faults: &Faults{}, Tokens: &Tokens{TTL: tokenTTL}, Ledger: &Ledger{},
		mux: http.NewServeMux(), drainLimit: drainLimit, requests: map[string]int{},
	}
}

// Handle routes pattern to h as operation op: each request is counted, and a fault queued for op
// is answered instead of h.
func (s *Scaffold) Handle(pattern, op string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[op]++
		s.mu.Unlock()
		if s.Faults.Serve(op, &drainingWriter{ResponseWriter: w, body: r.Body, limit: s.drainLimit}) {
			return
		}
		h(w, r)
	})
}

// HandleFunc routes pattern to h as it is: no count, no faults (the catch-all answer).
func (s *Scaffold) HandleFunc(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }

// ServeHTTP answers one request.
func (s *Scaffold) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Requests counts the requests of operation op so far.
func (s *Scaffold) Requests(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[op]
}

// drainingWriter reads the request body (bounded) before the answer's header goes out: a client
// still sending an upload then reads the injected answer instead of a reset connection.
type drainingWriter struct {
	http.ResponseWriter
	body    io.Reader
	limit   int64
	drained bool
}

func (d *drainingWriter) WriteHeader(code int) {
	if !d.drained {
		d.drained = true
		if d.body != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(d.body, d.limit))
		}
	}
	d.ResponseWriter.WriteHeader(code)
}
