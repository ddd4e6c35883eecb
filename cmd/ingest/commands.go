package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/broker"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/service"
)

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if pos, err := flags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: serve takes no arguments, got %q", errUsage, pos)
	}
	cfg, which, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := service.NewLogger(cfg.Log, stderr)
	log.Info("configuration: " + which)
	return service.Run(ctx, cfg, log)
}

func tail(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	all := fs.Bool("all", false, "replay the whole stream first, then follow")
	pos, err := flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("%w: tail takes one subject at most", errUsage)
	}
	cfg, ep, err := discover(*cfgPath)
	if err != nil {
		return err
	}
	names := events.Names{Namespace: cfg.NATS.Namespace}
	subject := names.AllSubjects()
	if len(pos) == 1 {
		subject = pos[0]
	}
	nc, err := broker.Dial(ep.NATSURL, service.BrokerConfig(cfg))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var werr error
	err = events.Follow(ctx, js, names.Stream(), subject, *all, func(m jetstream.Msg) {
		line := m.Data()
		if !json.Valid(line) {
			line, _ = json.Marshal(map[string]string{"subject": m.Subject(), "data": string(line)})
		}
		if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil && werr == nil {
			werr = err // stdout closed (| head): stop
		}
	})
	if werr != nil {
		return nil
	}
	return err
}

// stateRebuild replays the stream into the state bucket (events.Rebuild) of the running
// deployment the configuration names.
func stateRebuild(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("state rebuild", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if pos, err := flags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: state rebuild takes no arguments, got %q", errUsage, pos)
	}
	cfg, ep, err := discover(*cfgPath)
	if err != nil {
		return err
	}
	nc, err := broker.Dial(ep.NATSURL, service.BrokerConfig(cfg))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	r, err := events.Rebuild(ctx, js, events.Names{Namespace: cfg.NATS.Namespace})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "replayed %d document events: %d were missing from the state and are now in it; %d messages were not events\n",
		r.Events, r.Applied, r.Malformed)
	return err
}

func status(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	pos, err := flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: ingest status ID", errUsage)
	}
	_, ep, err := discover(*cfgPath)
	if err != nil {
		return err
	}
	c := &httpdrop.Client{BaseURL: ep.HTTPURL, APIKey: ep.APIKey}
	raw, err := c.Status(ctx, pos[0])
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out.Bytes())
	return err
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func submit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	var vendors, meta multiFlag
	fs.Var(&vendors, "vendor", "vendor to send the files to (repeatable)")
	fs.Var(&meta, "meta", "metadata key=value (repeatable)")
	route := fs.String("route", "", "route to use")
	files, err := flags(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%w: ingest submit FILE... [--vendor V]", errUsage)
	}
	opts := httpdrop.SubmitOptions{Vendors: vendors, Route: *route, Metadata: map[string]string{}}
	for _, kv := range meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%w: --meta wants key=value, got %q", errUsage, kv)
		}
		opts.Metadata[k] = v
	}
	_, ep, err := discover(*cfgPath)
	if err != nil {
		return err
	}
	c := &httpdrop.Client{BaseURL: ep.HTTPURL, APIKey: ep.APIKey}
	failed := 0
	enc := json.NewEncoder(stdout)
	for _, f := range files {
		resp, err := c.SubmitFile(ctx, f, opts)
		if err != nil {
			failed++
			fmt.Fprintf(stderr, "ingest: %s: %v\n", f, err)
			continue
		}
		for _, d := range resp.Documents {
			_ = enc.Encode(map[string]any{"file": f, "id": d.ID, "status_url": ep.HTTPURL + d.StatusURL,
				"content_type": d.ContentType, "size": d.Size, "sha256": d.SHA256})
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d files were not accepted", failed, len(files))
	}
	return nil
}

func configCheck(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if _, err := flags(fs, args); err != nil {
		return err
	}
	cfg, which, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	// Exactly what serve checks before it starts anything.
	if err := service.Check(cfg); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: OK\n", which)
	return err
}

func discover(cfgPath string) (config.Config, service.Endpoints, error) {
	cfg, _, err := loadConfig(cfgPath)
	if err != nil {
		return cfg, service.Endpoints{}, err
	}
	ep, err := service.Discover(cfg)
	return cfg, ep, err
}
