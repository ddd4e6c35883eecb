// Command ingest is the document-ingest service and its command line.
//
//	ingest [serve] [--config F]          run everything configured
//	ingest tail [SUBJECT] [--all]        print events as JSON lines (default subject ingest.>)
//	ingest status ID                     print one document's state
//	ingest ls [--status S] [--all] …     list documents, newest first
//	ingest result ID [--json]            what each vendor made of a document
//	ingest get ID -o FILE [--artifact N] download a document or a vendor's result file
//	ingest submit FILE... [--vendor V]   upload files like the HTTP drop does
//	ingest retry ID [--vendor V]         a new round of a failed document at its vendor
//	ingest config check [--config F]     validate a configuration, listing every problem
//	ingest replay --subscription S --since 2h   re-send a webhook subscription's events
//	ingest webhooks [list|enable S|…]    webhook subscriptions: states, dead letters, redelivery
//
// Without --config (or $INGEST_CONFIG), the embedded default configuration is used: the shipped
// config.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ingest-dev/ingest"
	"github.com/ingest-dev/ingest/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command line the user should correct; it exits 2.
var errUsage = errors.New("usage")

const usage = `ingest: documents in by mail, WebDAV and HTTP; out to document-AI vendors; events on NATS.

Usage:
  ingest [serve] [--config F]                 run the service
  ingest tail [SUBJECT] [--all] [--config F]  print events as JSON lines (default: every event)
  ingest status ID [--config F]               print one document's state
  ingest ls [--status S] [--vendor V] [--source K] [--route R] [--since 1h] [--limit N] [--all] [--json]
                                              list documents, newest first: a table and counts on
                                              a terminal, else (or --json) one JSON object a line
  ingest result ID [--json]                   what each vendor made of a document: fields, result
                                              files, failures
  ingest get ID -o FILE|- [--artifact NAME [--vendor V]]
                                              download the document's bytes, or a vendor's result
                                              file; FILE is written whole or not at all
  ingest retry ID [--vendor V] [--key K] [--config F]
                                              a new round of the document's failed vendor (every
                                              failed one without --vendor); prints its new state
  ingest submit FILE|DIR... [-r] [--vendor V] [--route R] [--meta k=v] [--config F]
                                              upload files, one request each (-r: the files
                                              in the directories named, and below)
  ingest config check [--config F]            validate a configuration and list every problem
  ingest config gen-token                     print a new random secret (API key, callback token)
  ingest state rebuild [--config F]           replay the stream's document events into the state
                                              bucket (repairs lost state writes; safe to repeat)
  ingest replay --subscription S --since 2h [--config F]
                                              re-send a webhook subscription's events since then, in
                                              order, with their webhook-ids (since: 2h, 3d or RFC 3339)
  ingest webhooks [list | enable S | dead-letters S | redeliver S EVENT_ID | attempts S EVENT_ID]
                                              webhook subscriptions: states, a 410's disabled mark
                                              cleared, dead letters, one delivered again, attempts

Without --config (or $INGEST_CONFIG) the embedded default configuration is used.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	// "ingest config --help", "ingest state rebuild -h": commands of commands answer before their
	// subcommand is looked at; the others print their flags too (helpRequest, below).
	if (cmd == "config" || cmd == "state") && (len(args) > 0 && isHelp(args[0]) || len(args) > 1 && isHelp(args[1])) {
		fmt.Fprint(stdout, commandUsage(cmd, nil))
		return 0
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, stderr)
	case "tail":
		err = tail(ctx, args, stdout, stderr)
	case "status":
		err = status(ctx, args, stdout)
	case "ls":
		err = ls(ctx, args, stdout, stderr)
	case "result":
		err = result(ctx, args, stdout)
	case "get":
		err = get(ctx, args, stdout, stderr)
	case "submit":
		err = submit(ctx, args, stdout, stderr)
	case "retry":
		err = retry(ctx, args, stdout)
	case "config":
		switch {
		case len(args) > 0 && args[0] == "check":
			err = configCheck(args[1:], stdout)
		case len(args) == 1 && args[0] == "gen-token":
			_, err = fmt.Fprintln(stdout, config.NewToken())
		default:
			err = fmt.Errorf("%w: ingest config check [--config F] | ingest config gen-token", errUsage)
		}
	case "state":
		if len(args) == 0 || args[0] != "rebuild" {
			err = fmt.Errorf("%w: ingest state rebuild [--config F]", errUsage)
			break
		}
		err = stateRebuild(ctx, args[1:], stdout)
	case "replay":
		err = replay(ctx, args, stdout)
	case "webhooks":
		err = webhooksCmd(ctx, args, stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ingest: %v\n\n%s", err, usage)
		return 2
	case errors.As(err, new(*helpRequest)):
		var h *helpRequest
		errors.As(err, &h)
		fmt.Fprint(stdout, commandUsage(cmd, h.fs))
		return 0
	}
	fmt.Fprintf(stderr, "ingest: %v\n", err)
	return 1
}

// flags parses args into fs, letting flags and positional arguments mix ("submit a.pdf --vendor
// VENDOR"), and returns the positional ones.
func flags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpRequest{fs: fs}
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "configuration file (default: $INGEST_CONFIG, else ./config.yaml when there is one, else the embedded default)")
}

// embeddedConfig names the built-in configuration in messages.
const embeddedConfig = "embedded default (config.yaml)"

// loadConfig reads the configuration: the file given with --config, else $INGEST_CONFIG, else
// ./config.yaml when it exists, else the embedded default. It also says which one it read, for the
// person who wonders why a setting does not apply.
func loadConfig(flagPath string) (config.Config, string, error) {
	path, why := flagPath, "--config"
	if path == "" {
		path, why = os.Getenv("INGEST_CONFIG"), "$INGEST_CONFIG"
	}
	if path == "" {
		if _, err := os.Stat("config.yaml"); err == nil {
			path, why = "config.yaml", "found in the working directory"
		}
	}
	if path == "" {
		cfg, err := config.Parse(ingest.DefaultConfigYAML(), embeddedConfig, os.LookupEnv)
		return cfg, embeddedConfig, err
	}
	cfg, err := config.Load(path)
	return cfg, fmt.Sprintf("%s (%s)", path, why), err
}

// helpRequest is -h or --help among a command's arguments: its usage is printed, exit 0.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string { return "help requested" }

func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "-help" }

// commandUsage is cmd's part of usage (its lines and their continuations) and, when known, its
// flags with their defaults.
func commandUsage(cmd string, fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	in := false
	for _, line := range strings.Split(usage, "\n") {
		switch {
		case strings.HasPrefix(line, "  ingest "+cmd+" ") || line == "  ingest "+cmd ||
			cmd == "serve" && strings.HasPrefix(line, "  ingest [serve]"):
			in = true
		case strings.HasPrefix(line, "    ") && in: // a continuation line
		default:
			in = false
		}
		if in {
			b.WriteString(line + "\n")
		}
	}
	if fs != nil {
		b.WriteString("\nFlags:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
	}
	return b.String()
}
