package service

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/webhooks"
)

// startWebhooks runs the outbound webhook subscriptions, when there are any, and adds their API.
func (s *Service) startWebhooks(ctx context.Context, cfg config.Config, keys []string, reg prometheus.Registerer) error {
	if len(cfg.Subscriptions) == 0 {
		return nil
	}
	subs := make([]webhooks.Subscription, len(cfg.Subscriptions))
	for i, c := range cfg.Subscriptions {
		subs[i] = webhooks.FromConfig(c)
	}
	d, err := webhooks.New(ctx, webhooks.Config{Bus: s.bus, Subscriptions: subs, Drain: s.drain(), Logger: s.log, Registerer: reg})
	if err != nil {
		return err
	}
	s.webhooks = d
	s.add("webhooks", d.Run)
	webhooks.NewAPI(d, keys).Register(s.http.Echo())
	return nil
}

// readyDetail is what /readyz says beyond ready or not: the webhook subscriptions' states (a
// subscription its receiver disabled does not make the service unready).
func (s *Service) readyDetail(ctx context.Context) map[string]any {
	if s.webhooks == nil {
		return nil
	}
	return map[string]any{"webhooks": s.webhooks.Statuses(ctx)}
}
