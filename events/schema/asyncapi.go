package schema

import (
	"encoding/json"

	"github.com/ingest-dev/ingest/events"
)

// EventType describes one type of event: its CloudEvents type, where it is published and the Go
// type of its data.
type EventType struct {
	Name    string // message name: received, …, delivery_failed
	Type    string // CloudEvents type
	Subject string // subject with {parameter}
	Param   string // the last token's meaning
	Summary string
	Data    any
}

// EventTypes are every event ingest publishes.
func EventTypes(n events.Names) []EventType {
	root := n.Root()
	return []EventType{
		{"received", events.Received.Type(), root + ".document.received.{source}", "source", "A document was stored (source kind: http, imap, webdav).", events.ReceivedData{}},
		{"submitted", events.Submitted.Type(), root + ".document.submitted.{vendor}", "vendor", "A vendor took the document.", events.SubmittedData{}},
		{"completed", events.Completed.Type(), root + ".document.completed.{vendor}", "vendor", "The vendor's result is in.", events.CompletedData{}},
		{"failed", events.Failed.Type(), root + ".document.failed.{vendor}", "vendor", "The vendor failed the document, or ingest gave up.", events.FailedData{}},
		{"retried", events.Retried.Type(), root + ".document.retried.{vendor}", "vendor", "Someone asked for another round of a document at a vendor whose last round failed.", events.RetriedData{}},
		{"rejected", events.Rejected.Type(), root + ".document.rejected.{source}", "source", "An input that could not become a document.", events.RejectedData{}},
		{"delivery_failed", events.DeliveryFailedType, root + ".delivery.failed.{subscription}", "subscription", "A webhook delivery gave up: a dead letter.", events.DeliveryFailedData{}},
	}
}

// Envelope is the schema of an event of type t: the CloudEvents 1.0 envelope with t's data.
func Envelope(t EventType) *Schema {
	env := For(events.Event{})
	env.Properties["specversion"].Const = events.SpecVersion
	env.Properties["type"].Const = t.Type
	env.Properties["datacontenttype"].Const = "application/json"
	env.Properties["data"] = For(t.Data)
	return env
}

// AsyncAPI returns the AsyncAPI 3.0 document of the events on NATS and the webhook deliveries.
func AsyncAPI(n events.Names) ([]byte, error) {
	channels, operations, messages, schemas := map[string]any{}, map[string]any{}, map[string]any{}, map[string]any{}
	var docMessages []map[string]string
	for _, t := range EventTypes(n) {
		schemas[t.Name+"_data"] = For(t.Data)
		messages[t.Name] = map[string]any{
			"name": t.Name, "title": t.Type, "summary": t.Summary,
			"contentType": "application/cloudevents+json",
			"payload":     Envelope(t),
			"headers": map[string]any{"type": "object", "properties": map[string]any{
				"Nats-Msg-Id": map[string]any{"type": "string", "description": "the CloudEvent id: the step's idempotency key"},
			}},
		}
		ch := "nats_" + t.Name
		channels[ch] = map[string]any{
			"address":    t.Subject,
			"messages":   map[string]any{t.Name: map[string]string{"$ref": "#/components/messages/" + t.Name}},
			"parameters": map[string]any{t.Param: map[string]string{"description": "the " + t.Param}},
		}
		operations["receive_"+t.Name] = map[string]any{
			"action": "receive", "summary": "Subscribe to " + t.Subject + " on the " + n.Stream() + " stream.",
			"channel": map[string]string{"$ref": "#/channels/" + ch},
		}
		if t.Name != "delivery_failed" {
			docMessages = append(docMessages, map[string]string{"$ref": "#/components/messages/" + t.Name})
		}
	}
	channels["webhook"] = map[string]any{
		"address":     "{url}",
		"description": "A webhook subscription's URL: each document event it wants is POSTed as its CloudEvent, signed as Standard Webhooks describes.",
		"parameters":  map[string]any{"url": map[string]string{"description": "the subscription's url"}},
		"messages": func() map[string]any {
			m := map[string]any{}
			for _, r := range docMessages {
				name := r["$ref"][len("#/components/messages/"):]
				m[name] = r
			}
			return m
		}(),
		"bindings": map[string]any{"http": map[string]any{"bindingVersion": "0.3.0"}},
	}
	operations["webhook_delivery"] = map[string]any{
		"action": "send", "summary": "Deliver an event to a webhook subscriber (POST; success = 2xx).",
		"channel":  map[string]string{"$ref": "#/channels/webhook"},
		"bindings": map[string]any{"http": map[string]any{"method": "POST", "bindingVersion": "0.3.0"}},
		"traits":   []any{map[string]any{"$ref": "#/components/operationTraits/standard_webhooks"}},
	}
	doc := map[string]any{
		"asyncapi": "3.0.0",
		"info": map[string]any{
			"title": "ingest events", "version": "1.0.0",
			"description": "Document events on NATS JetStream (stream " + n.Stream() + " over " + n.AllSubjects() +
				"), CloudEvents 1.0 in structured JSON mode, and the same events delivered to webhook subscribers. " +
				"Generated from the Go types in package events: `INGEST_UPDATE_ASYNCAPI=1 go test ./events/schema`.",
		},
		"defaultContentType": "application/cloudevents+json",
		"servers": map[string]any{
			"nats": map[string]any{"host": "localhost:4222", "protocol": "nats", "description": "the deployment's NATS (embedded or external)"},
		},
		"channels":   channels,
		"operations": operations,
		"components": map[string]any{
			"messages": messages,
			"schemas":  schemas,
			"operationTraits": map[string]any{"standard_webhooks": map[string]any{
				"description": "Headers: webhook-id (the CloudEvent id), webhook-timestamp (unix seconds of the attempt), " +
					"webhook-signature (space-separated v1,<base64 HMAC-SHA256 of \"id.timestamp.body\"> per secret). " +
					"Content-Type application/json, or application/cloudevents+json with format: cloudevents.",
			}},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}
