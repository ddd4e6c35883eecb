// Package ingest is the document-ingest service. Its packages:
//
//   - config: the YAML configuration
//   - broker: the NATS connection, embedded or external
//   - events: CloudEvents envelope, subjects, stream and bucket setup, blobs, document state
//   - intake: turns a byte stream from any source into a stored document and its received event
//   - httpapi: the HTTP server, problem+json errors, health and metrics
//   - adapters/httpdrop: POST /v1/documents and the document API
//   - service: runs everything a configuration asks for
//   - cmd/ingest: the command line
package ingest

import _ "embed"

//go:embed config.yaml
var defaultConfig []byte

// DefaultConfigYAML returns the shipped, documented default configuration (config.yaml).
func DefaultConfigYAML() []byte { return append([]byte(nil), defaultConfig...) }
