package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ingest-dev/ingest/docapi"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
)

func docClient(cfgPath string) (*docapi.Client, error) {
	api, err := serviceAPI(cfgPath)
	return (*docapi.Client)(api), err
}

// ls: ingest ls [--status S] [--vendor V] [--source K] [--route R] [--since 1h] [--limit N] [--all] [--json].
// On a terminal a table and a counts line; otherwise (or with --json) one document per line, as
// GET /v1/documents gives it, for jq and friends.
func ls(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	q := url.Values{}
	for _, name := range []string{"status", "vendor", "source", "route", "since"} {
		fs.Func(name, listFlagHelp[name], func(v string) error { q.Set(name, v); return nil })
	}
	limit := fs.Int("limit", 50, "documents per page (1-500)")
	all := fs.Bool("all", false, "every matching document, page after page (default: the newest page only)")
	asJSON := fs.Bool("json", false, "one JSON object per line, also on a terminal")
	if pos, err := flags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("%w: ls takes no arguments, got %q", errUsage, pos)
	}
	if *limit < 1 || *limit > 500 {
		return fmt.Errorf("%w: --limit must be from 1 to 500", errUsage)
	}
	q.Set("limit", strconv.Itoa(*limit))
	c, err := docClient(*cfgPath)
	if err != nil {
		return err
	}
	table := !*asJSON && isTerminal(stdout)
	var rows []events.Document
	shown := 0
	for {
		page, err := c.List(ctx, q)
		var p *httpapi.Problem
		if errors.As(err, &p) && p.Status == http.StatusNotFound {
			return errors.New("the running service lists no documents: its document index is off (index.enabled: false)")
		}
		if err != nil {
			return err
		}
		if !page.Index.CaughtUp && q.Get("cursor") == "" {
			fmt.Fprintf(stderr, "ingest ls: the index is still reading the stream (%d events behind): the list may be incomplete\n", page.Index.Behind)
		}
		for _, raw := range page.Documents {
			shown++
			if !table {
				if _, err := fmt.Fprintf(stdout, "%s\n", compact(raw)); err != nil {
					return nil // stdout closed (| head): stop
				}
				continue
			}
			var d events.Document
			if err := json.Unmarshal(raw, &d); err != nil {
				return fmt.Errorf("a listed document is not the expected JSON: %w", err)
			}
			rows = append(rows, d)
		}
		if page.NextCursor == nil || !*all {
			if table {
				printDocuments(stdout, rows)
				fmt.Fprintln(stdout, countsLine(shown, page.Counts.Status, page.NextCursor != nil))
			}
			return nil
		}
		q.Set("cursor", *page.NextCursor)
	}
}

var listFlagHelp = map[string]string{
	"status": "only documents in this status: received, submitted, completed, failed, rejected",
	"vendor": "only documents sent (or to be sent) to this vendor",
	"source": "only documents from this source: a kind (imap) or kind/name (imap/invoices)",
	"route":  "only documents the route of this name chose vendors for",
	"since":  "only documents received since: a duration back (90m, 2h, 30d) or an RFC 3339 time",
}

func compact(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

func printDocuments(w io.Writer, docs []events.Document) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECEIVED\tSTATUS\tVENDORS\tSOURCE\tFILENAME")
	for _, d := range docs {
		received := "-"
		if !d.ReceivedAt.IsZero() {
			received = d.ReceivedAt.Local().Format("2006-01-02 15:04:05")
		}
		source := d.Source.Kind
		if d.Source.Name != "" {
			source += "/" + d.Source.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, received, d.Status, vendorList(d), orDash(source), orDash(printable(d.Filename)))
	}
	tw.Flush()
}

// vendorList names the document's vendors, with the status of each that differs from the
// document's own: "gini, laigo:failed".
func vendorList(d events.Document) string {
	names := slices.Clone(d.Chosen)
	for v := range d.Vendors {
		if !slices.Contains(names, v) {
			names = append(names, v)
		}
	}
	slices.Sort(names)
	var out []string
	for _, v := range names {
		st := events.StatusReceived
		if vs := d.Vendors[v]; vs != nil {
			st = vs.Status
		}
		if st != d.Status {
			v += ":" + string(st)
		}
		out = append(out, v)
	}
	return orDash(strings.Join(out, ", "))
}

// countsLine: "3 shown of 812: 809 completed, 3 failed".
func countsLine(shown int, byStatus map[string]int64, more bool) string {
	var total int64
	var parts []string
	for _, st := range []string{"received", "submitted", "completed", "failed", "rejected"} {
		if n := byStatus[st]; n > 0 {
			total += n
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	line := fmt.Sprintf("%d shown of %d", shown, total)
	if len(parts) > 0 {
		line += ": " + strings.Join(parts, ", ")
	}
	if more {
		line += " (more: --all, or narrow with --status/--vendor/--source/--since)"
	}
	return line
}

// result: ingest result ID [--json].
func result(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("result", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "the results as JSON (GET /v1/documents/{id}/results)")
	pos, err := flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: ingest result ID [--json]", errUsage)
	}
	c, err := docClient(*cfgPath)
	if err != nil {
		return err
	}
	r, err := c.Results(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printResults(stdout, r)
	return nil
}

func printResults(w io.Writer, r docapi.Results) {
	fmt.Fprintf(w, "%s  %s  %s\n", r.ID, r.Status, printable(r.Filename))
	if len(r.Results) == 0 {
		fmt.Fprintln(w, "no results yet")
	}
	vendors := make([]string, 0, len(r.Results))
	for v := range r.Results {
		vendors = append(vendors, v)
	}
	slices.Sort(vendors)
	for _, v := range vendors {
		vr := r.Results[v]
		fmt.Fprintf(w, "\n%s: %s", v, vr.Status)
		if vr.VendorRef != "" {
			fmt.Fprintf(w, ", ref %s", printable(vr.VendorRef))
		}
		if !vr.CompletedAt.IsZero() {
			fmt.Fprintf(w, ", %s", vr.CompletedAt.Local().Format(time.DateTime))
		}
		fmt.Fprintln(w)
		if len(vr.Fields) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  FIELD\tVALUE\tCONFIDENCE\tPAGE")
			for _, f := range vr.Fields {
				value := f.Value
				if f.Currency != "" {
					value += " " + f.Currency
				}
				conf, page := "-", "-"
				if f.Confidence != nil {
					conf = strconv.FormatFloat(*f.Confidence, 'f', 2, 64)
				}
				if f.Page != nil {
					page = strconv.Itoa(*f.Page)
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", printable(f.Name), printable(value), conf, page)
			}
			tw.Flush()
		} else if vr.Status == events.StatusCompleted {
			fmt.Fprintln(w, "  no fields")
		}
		if vr.Text != "" {
			fmt.Fprintf(w, "  text: %d characters (--json shows it)\n", len([]rune(vr.Text)))
		}
		for _, a := range vr.Artifacts {
			fmt.Fprintf(w, "  file: %s (%s, %d bytes): ingest get %s --artifact %s --vendor %s -o FILE\n",
				printable(a.Name), a.ContentType, a.Size, r.ID, shellQuote(a.Name), v)
		}
		if vr.ResultObjectKey != "" {
			fmt.Fprintf(w, "  the full result was too large for its event: object %s\n", vr.ResultObjectKey)
		}
		for _, f := range vr.Failures {
			how := "temporary"
			if f.Permanent {
				how = "permanent"
			}
			if f.Attempts > 0 {
				how += fmt.Sprintf(", %d attempts", f.Attempts)
			}
			fmt.Fprintf(w, "  failed %s (%s): %s\n", f.FailedAt.Local().Format(time.DateTime), how, printable(f.Error))
		}
		if vr.Unavailable != "" {
			fmt.Fprintf(w, "  (%s)\n", vr.Unavailable)
		}
	}
	if len(r.Pending) > 0 {
		fmt.Fprintf(w, "\nstill at work: %s\n", strings.Join(r.Pending, ", "))
	}
}

// get: ingest get ID -o FILE|- [--artifact NAME [--vendor V]].
func get(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	out := fs.String("o", "", "where to write: a file (written whole or not at all), or - for stdout")
	artifact := fs.String("artifact", "", "a vendor's result file (as ingest result lists them) instead of the document")
	vendor := fs.String("vendor", "", "the vendor whose result file (needed when several have one of that name)")
	pos, err := flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *out == "" {
		return fmt.Errorf("%w: ingest get ID -o FILE|- [--artifact NAME [--vendor V]]", errUsage)
	}
	if *vendor != "" && *artifact == "" {
		return fmt.Errorf("%w: --vendor goes with --artifact", errUsage)
	}
	c, err := docClient(*cfgPath)
	if err != nil {
		return err
	}
	path := docapi.ContentPath(pos[0])
	if *artifact != "" {
		path = docapi.ArtifactPath(pos[0], *artifact, *vendor)
	}
	if *out == "-" {
		_, _, err := c.Download(ctx, path, stdout)
		return err
	}
	n, err := downloadTo(ctx, c, path, *out)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stderr, "ingest get: wrote %s (%d bytes)\n", *out, n)
	return err
}

// downloadTo writes what path answers to a temporary file next to dest and renames it to dest
// only once the download is complete: a failed download leaves no partial dest (and an earlier
// dest untouched).
func downloadTo(ctx context.Context, c *docapi.Client, path, dest string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.part")
	if err != nil {
		return 0, err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	_, n, err := c.Download(ctx, path, tmp)
	if err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("write %s: %w", dest, err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("write %s: %w", dest, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return 0, err
	}
	done = true
	return n, nil
}

// isTerminal reports whether w is a terminal (a table for people) rather than a pipe or file.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// printable keeps control characters (a filename from a mail, a vendor's words) from moving the
// terminal's cursor or changing its colours.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return '?'
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
