package dispatch

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the dispatcher's and poller's Prometheus metrics; one set serves both.
type Metrics struct {
	submissions *prometheus.CounterVec // vendor, outcome
	inDoubt     *prometheus.CounterVec // vendor, outcome
	unrouted    prometheus.Counter
	calls       *prometheus.HistogramVec
	completed   *prometheus.CounterVec
	failed      *prometheus.CounterVec // vendor, reason
	polls       *prometheus.CounterVec // vendor, outcome
	latency     *prometheus.HistogramVec
	retries     *prometheus.CounterVec // vendor
}

// NewMetrics creates the metrics and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_vendor_submissions_total", Help: "Submission attempts by vendor and outcome (submitted, refused, retry, in_doubt).",
		}, []string{"vendor", "outcome"}),
		inDoubt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_vendor_in_doubt_total",
			Help: "Interrupted submissions by outcome: reconciled (found at the vendor by its tag), absent (the vendor certainly has none: submitted again), unknown (the vendor could not tell: asked again later), gave_up (in doubt too long: failed for an operator), unreconcilable (the vendor cannot be asked: submitted again, possibly twice), duplicate (the vendor has it twice).",
		}, []string{"vendor", "outcome"}),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ingest_dispatch_unrouted_total", Help: "Received documents no route matched.",
		}),
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ingest_vendor_call_seconds", Help: "Vendor API calls by vendor and operation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 12),
		}, []string{"vendor", "op"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_documents_completed_total", Help: "Completed events by vendor.",
		}, []string{"vendor"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_documents_failed_total", Help: "Failed events by vendor and reason.",
		}, []string{"vendor", "reason"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_vendor_polls_total", Help: "Status checks by vendor and answer (pending, done, error).",
		}, []string{"vendor", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ingest_document_completion_seconds", Help: "From received to completed, by vendor.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 12),
		}, []string{"vendor"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingest_dispatch_retries_total", Help: "Retried rounds the dispatcher took up, by vendor (an operator's retry).",
		}, []string{"vendor"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.submissions, m.inDoubt, m.unrouted, m.calls, m.completed, m.failed, m.polls, m.latency, m.retries} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
