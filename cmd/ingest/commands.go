package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/adapters/httpdrop"
	"github.com/ingest-dev/ingest/broker"
	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
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
	// Process-wide, so set here where the process is ours, not in service (tests run many).
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit.Int64())
	}
	return service.Run(ctx, cfg, log)
}

func tail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
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
	// tail outlives a restart of the service: it reconnects for as long as it runs, and says so
	// (the service keeps its embedded NATS port across restarts: data_dir/nats-port).
	nc, err := broker.Dial(ep.NATSURL, service.BrokerConfig(cfg), nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			fmt.Fprintf(stderr, "ingest tail: lost the connection to NATS (%v); reconnecting…\n", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			fmt.Fprintf(stderr, "ingest tail: reconnected to %s; following again\n", nc.ConnectedUrlRedacted())
		}))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var werr error
	following := events.FollowConfig{Stream: names.Stream(), Subject: subject, FromStart: *all, Ready: func() {
		// On stderr, so that stdout stays one JSON event per line; it also tells whoever
		// submits next that nothing they send from now on will be missed.
		fmt.Fprintf(stderr, "ingest tail: following %s on %s\n", subject, nc.ConnectedUrlRedacted())
	}}
	err = events.Follow(ctx, js, following, func(m jetstream.Msg) {
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
	api, err := serviceAPI(*cfgPath)
	if err != nil {
		return err
	}
	c := (*httpdrop.Client)(api)
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
	recursive := fs.Bool("r", false, "submit the files in the directories named, and in their subdirectories")
	paths, err := flags(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("%w: ingest submit FILE... [--vendor V]", errUsage)
	}
	// Directories are checked before anything is sent: a mistyped path fails the command at once,
	// not after half the files went.
	files, err := expandPaths(paths, *recursive)
	if err != nil {
		return err
	}
	opts := httpdrop.SubmitOptions{Vendors: vendors, Route: *route, Metadata: map[string]string{}}
	for _, kv := range meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%w: --meta wants key=value, got %q", errUsage, kv)
		}
		opts.Metadata[k] = v
	}
	api, err := serviceAPI(*cfgPath)
	if err != nil {
		return err
	}
	c := (*httpdrop.Client)(api)
	failed := 0
	enc := json.NewEncoder(stdout)
	progress := newProgress(stderr, len(files))
	for i, f := range files {
		progress.show(i, f)
		resp, err := c.SubmitFile(ctx, f, opts)
		if err != nil {
			failed++
			progress.clear()
			fmt.Fprintf(stderr, "ingest: %s: %v\n", f, err)
			continue
		}
		for _, d := range resp.Documents {
			_ = enc.Encode(map[string]any{"file": f, "id": d.ID, "status_url": api.BaseURL + d.StatusURL,
				"content_type": d.ContentType, "size": d.Size, "sha256": d.SHA256})
		}
	}
	progress.clear()
	if failed > 0 {
		return fmt.Errorf("%d of %d files were not accepted", failed, len(files))
	}
	return nil
}

// expandPaths turns the paths given to submit into the files to send: files as they are, the
// regular files of a directory with -r (in name order; hidden files and directories skipped).
// A directory without -r is an error that says what to do.
func expandPaths(paths []string, recursive bool) ([]string, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		if !recursive {
			return nil, fmt.Errorf("%w: %s is a directory; use -r to submit the files in it", errUsage, p)
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != p && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no files to submit in %s", strings.Join(paths, ", "))
	}
	return files, nil
}

// progress shows "[3/120] invoices/a.pdf" on one terminal line while submit works; written to
// anything other than a terminal it says nothing (the JSON lines on stdout are the record).
type progress struct {
	w     io.Writer
	total int
	on    bool
}

func newProgress(w io.Writer, total int) *progress {
	f, ok := w.(*os.File)
	on := false
	if ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			on = total > 1
		}
	}
	return &progress{w: w, total: total, on: on}
}

func (p *progress) show(i int, name string) {
	if p.on {
		fmt.Fprintf(p.w, "\r\033[K[%d/%d] %s", i+1, p.total, name)
	}
}

func (p *progress) clear() {
	if p.on {
		fmt.Fprint(p.w, "\r\033[K")
	}
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

// serviceAPI finds the running service the configuration names (data_dir/runtime.json) and
// returns a client of its HTTP API with its key; the clients of httpdrop, docapi and webhooks
// are that type.
func serviceAPI(cfgPath string) (*httpapi.Client, error) {
	_, ep, err := discover(cfgPath)
	if err != nil {
		return nil, err
	}
	return &httpapi.Client{BaseURL: ep.HTTPURL, APIKey: ep.APIKey}, nil
}

func discover(cfgPath string) (config.Config, service.Endpoints, error) {
	cfg, _, err := loadConfig(cfgPath)
	if err != nil {
		return cfg, service.Endpoints{}, err
	}
	ep, err := service.Discover(cfg)
	return cfg, ep, err
}
