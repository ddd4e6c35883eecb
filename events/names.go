package events

import (
	"fmt"
	"strings"
)

// Names are the JetStream names of one deployment, all derived from its namespace so that several
// deployments can share a NATS account. The default namespace "ingest" gives the contract's names:
// stream INGEST over ingest.>, buckets ingest-documents and ingest-state.
type Names struct {
	Namespace string
}

// Stream is the event stream's name.
func (n Names) Stream() string { return strings.ToUpper(strings.ReplaceAll(n.Namespace, "-", "_")) }

// Root is the subject every event lives under.
func (n Names) Root() string { return n.Namespace }

// AllSubjects matches every event.
func (n Names) AllSubjects() string { return n.Namespace + ".>" }

// DocumentSubjects matches every document event.
func (n Names) DocumentSubjects() string { return n.Namespace + ".document.>" }

// DocumentsBucket is the Object Store bucket that holds document bytes and result files.
func (n Names) DocumentsBucket() string { return n.Namespace + "-documents" }

// StateBucket is the Key-Value bucket with one document state per key.
func (n Names) StateBucket() string { return n.Namespace + "-state" }

// Bucket names a further bucket of this deployment (idempotency keys, checkpoints, leases).
func (n Names) Bucket(purpose string) string { return n.Namespace + "-" + purpose }

// Durable names a durable consumer of this deployment.
func (n Names) Durable(purpose string) string { return n.Namespace + "-" + purpose }

// Subject is where an event of kind k is published: <root>.document.<kind>.<qualifier>, the
// qualifier being the source kind (received, rejected) or the vendor (submitted, completed,
// failed).
func (n Names) Subject(k Kind, qualifier string) (string, error) {
	if !k.valid() {
		return "", fmt.Errorf("unknown event kind %q", k)
	}
	if !ValidToken(qualifier) {
		return "", fmt.Errorf("%q cannot be a subject token (use a-z, 0-9, _ or -)", qualifier)
	}
	return n.Namespace + ".document." + string(k) + "." + qualifier, nil
}

// KindSubjects matches every event of one kind.
func (n Names) KindSubjects(k Kind) string { return n.Namespace + ".document." + string(k) + ".>" }

// ValidToken reports whether s can be a source kind, vendor or route name: it becomes a subject
// token, so 1-64 characters of a-z, 0-9, _ and -.
func ValidToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// CallbackSubject is where vendor callbacks are parked (what "received") and audited ("unmatched"):
// <root>.callback.<what>.<vendor>. They are in the stream for the record, but are not document
// events.
func (n Names) CallbackSubject(what, vendor string) string {
	return n.Namespace + ".callback." + what + "." + vendor
}

// CallbackSubjects matches the parked callbacks of every vendor ("received") or the unmatched ones.
func (n Names) CallbackSubjects(what string) string { return n.Namespace + ".callback." + what + ".>" }

// DeliveryFailedType is the CloudEvents type of a webhook dead letter.
const DeliveryFailedType = "ingest.delivery.failed"

// DeliveryFailedSubject is where the dead letters of one webhook subscription are published:
// <root>.delivery.failed.<subscription>.
func (n Names) DeliveryFailedSubject(subscription string) string {
	return n.Namespace + ".delivery.failed." + subscription
}
