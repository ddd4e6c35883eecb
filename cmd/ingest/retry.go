package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"
)

// retry: ingest retry ID [--vendor V] [--key K] — a new round of the document's failed vendor (every
// failed one without --vendor), through the running service; prints the document's new state.
func retry(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("retry", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	vendor := fs.String("vendor", "", "the failed vendor to retry (default: every failed vendor of the document)")
	key := fs.String("key", "", "Idempotency-Key: the same command with the same key makes one round, however often it is run")
	pos, err := flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: ingest retry ID [--vendor V] [--key K]", errUsage)
	}
	c, err := docClient(*cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	doc, err := c.Retry(ctx, pos[0], *vendor, *key)
	if err != nil {
		return fmt.Errorf("retry refused: %w", err)
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}
