package webdav

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by all WebDAV watchers of a registry (labelled by source): the second
// watcher finds the first one's collectors registered and uses them.
type metrics struct {
	polls    *prometheus.CounterVec
	files    *prometheus.CounterVec
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_webdav_polls_total", Help: "WebDAV folder polls, by source and result (ok, error).",
		}, []string{"source", "result"}),
		files: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_webdav_files_total", Help: "WebDAV files dealt with, by source and outcome (ingested, rejected, failed, …).",
		}, []string{"source", "outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_webdav_requests_total", Help: "HTTP requests to WebDAV servers, by source and method.",
		}, []string{"source", "method"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ingest_webdav_poll_seconds", Help: "Time one poll of a WebDAV folder took, taking files included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"source"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.polls, err = register(reg, m.polls); err != nil {
		return nil, err
	}
	if m.files, err = register(reg, m.files); err != nil {
		return nil, err
	}
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}
