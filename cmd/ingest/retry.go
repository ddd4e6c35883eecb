package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/httpapi"
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
	_, ep, err := discover(*cfgPath)
	if err != nil {
		return err
	}
	u := strings.TrimRight(ep.HTTPURL, "/") + docapi.StatusURL(url.PathEscape(pos[0])) + "/retry"
	if *vendor != "" {
		u += "?" + url.Values{"vendor": {*vendor}}.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+ep.APIKey)
	if *key != "" {
		req.Header.Set("Idempotency-Key", *key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ingest at %s does not answer: %w", ep.HTTPURL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	if res.StatusCode != http.StatusAccepted {
		var p httpapi.Problem
		if json.Unmarshal(body, &p) == nil && p.Detail != "" {
			return fmt.Errorf("retry refused (%d %s): %s", p.Status, p.Title, p.Detail)
		}
		return fmt.Errorf("unexpected answer %s: %.200s", res.Status, body)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return fmt.Errorf("the answer is not JSON: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out.Bytes())
	return err
}
