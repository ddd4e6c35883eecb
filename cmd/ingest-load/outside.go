package main

import (
	"fmt"
	"net"
	"net/http"

	"github.com/ingest-dev/ingest/vendors/gini/ginisim"
)

// The credentials ingest-load's own Gini simulator accepts.
const (
	outsideClientID     = "load-client"
	outsideClientSecret = "load-client-secret-8c1f0e52a97d"
	outsideUser         = "load-user"
)

// startOutsideGini serves the Gini simulator from this process, answering at once, so that
// ingest talks to it as to the real Gini (sandbox off) and the simulator's CPU is not counted in
// the service's. It returns the configuration that points ingest's Gini at it.
func startOutsideGini() (config string, stop func(), err error) {
	sim := ginisim.New(ginisim.Config{ClientID: outsideClientID, ClientSecret: outsideClientSecret})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: sim}
	go func() { _ = srv.Serve(ln) }()
	url := "http://" + ln.Addr().String()
	config = fmt.Sprintf(`vendors:
  gini: {sandbox: false, base_url: %q, client_id: %s, client_secret: %s, user_identifier: %s,
         concurrency: 16, poll: {initial: 10ms, max: 1s, deadline: 1h}}
dispatch: {workers: 16, poll_workers: 32}
`, url, outsideClientID, outsideClientSecret, outsideUser)
	return config, func() { _ = srv.Close() }, nil
}
