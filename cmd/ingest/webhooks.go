package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/ingest-dev/ingest/webhooks"
)

// replay: ingest replay --subscription S --since 2h — through the running service, which holds
// the subscriptions' secrets and targets.
func replay(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	name := fs.String("subscription", "", "the webhook subscription")
	since := fs.String("since", "", "how far back: a duration (2h, 3d) or a time (2026-01-31T08:00:00Z)")
	if pos, err := flags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 || *name == "" || *since == "" {
		return fmt.Errorf("%w: ingest replay --subscription S --since 2h", errUsage)
	}
	c, err := webhookClient(*cfgPath)
	if err != nil {
		return err
	}
	return printJSON(stdout)(c.Replay(ctx, *name, *since))
}

// webhooksCmd: ingest webhooks [list | enable S | dead-letters S | redeliver S EVENT_ID | attempts S EVENT_ID].
func webhooksCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("webhooks", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	pos, err := flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		pos = []string{"list"}
	}
	want := map[string]int{"list": 1, "enable": 2, "dead-letters": 2, "redeliver": 3, "attempts": 3}
	if n, ok := want[pos[0]]; !ok || n != len(pos) {
		return fmt.Errorf("%w: ingest webhooks [list | enable S | dead-letters S | redeliver S EVENT_ID | attempts S EVENT_ID]", errUsage)
	}
	c, err := webhookClient(*cfgPath)
	if err != nil {
		return err
	}
	out := printJSON(stdout)
	switch pos[0] {
	case "enable":
		return out(c.Enable(ctx, pos[1]))
	case "dead-letters":
		return out(c.DeadLetters(ctx, pos[1]))
	case "redeliver":
		return out(c.Redeliver(ctx, pos[1], pos[2]))
	case "attempts":
		return out(c.Attempts(ctx, pos[1], pos[2]))
	}
	return out(c.List(ctx))
}

func webhookClient(cfgPath string) (*webhooks.Client, error) {
	api, err := serviceAPI(cfgPath)
	return (*webhooks.Client)(api), err
}

func printJSON(w io.Writer) func(json.RawMessage, error) error {
	return func(raw json.RawMessage, err error) error {
		if err != nil {
			return err
		}
		var out bytes.Buffer
		if err := json.Indent(&out, raw, "", "  "); err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", out.Bytes())
		return err
	}
}
