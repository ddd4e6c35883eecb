package imap

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are labelled by source name, so that every watcher of a deployment shares one set of
// collectors in the registry.
type metrics struct {
	seen       prometheus.Counter
	processed  prometheus.Counter
	skipped    *prometheus.CounterVec // by reason
	rejected   prometheus.Counter
	pollErrors prometheus.Counter
	reconnects prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, source string) (*metrics, error) {
	seen := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ingest_imap_mails_seen_total", Help: "New mails found in the watched mailbox.",
	}, []string{"source"})
	processed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ingest_imap_mails_processed_total", Help: "Mails whose documents were all announced and whose post-action ran.",
	}, []string{"source"})
	skipped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ingest_imap_mails_skipped_total", Help: "Mails left untouched: filtered out, or nothing in them to ingest.",
	}, []string{"source", "reason"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ingest_imap_mails_rejected_total", Help: "Mails that could not be processed (over the MIME limits, malformed), announced as rejected.",
	}, []string{"source"})
	pollErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ingest_imap_poll_errors_total", Help: "Failed connections and watch cycles.",
	}, []string{"source"})
	reconnects := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ingest_imap_reconnects_total", Help: "Connections made again after one failed or was lost.",
	}, []string{"source"})
	if reg != nil {
		for _, c := range []**prometheus.CounterVec{&seen, &processed, &skipped, &rejected, &pollErrors, &reconnects} {
			if err := register(reg, c); err != nil {
				return nil, err
			}
		}
	}
	return &metrics{
		seen:       seen.WithLabelValues(source),
		processed:  processed.WithLabelValues(source),
		skipped:    skipped.MustCurryWith(prometheus.Labels{"source": source}),
		rejected:   rejected.WithLabelValues(source),
		pollErrors: pollErrors.WithLabelValues(source),
		reconnects: reconnects.WithLabelValues(source),
	}, nil
}

// register registers *c, or points *c at the collector a watcher of another mailbox registered
// before.
func register(reg prometheus.Registerer, c **prometheus.CounterVec) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			*c = existing
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	return nil
}
