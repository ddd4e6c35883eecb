package imap

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/intake"
)

// origin is what a document's received event says about its mail.
func (w *Watcher) origin(m *mail, pl *partPlan) intake.Origin {
	md := map[string]string{
		"account":     w.cfg.Username,
		"mailbox":     w.cfg.Mailbox,
		"uid":         strconv.FormatUint(uint64(m.uid), 10),
		"uidvalidity": strconv.FormatUint(uint64(m.uidValidity), 10),
		"group":       m.group,
		"part_kind":   pl.part.Kind,
	}
	set := func(k, v string) {
		if v != "" {
			md[k] = truncateUTF8(v, maxMetadataValue)
		}
	}
	set("message_id", m.env.MessageID)
	set("from", m.env.From)
	set("to", m.env.To)
	set("cc", m.env.Cc)
	set("subject", m.env.Subject)
	if !m.env.Date.IsZero() {
		md["date"] = m.env.Date.UTC().Format(time.RFC3339)
	} else if !m.internal.IsZero() {
		md["date"] = m.internal.UTC().Format(time.RFC3339)
	}
	if pl.part.Index >= 0 {
		md["attachment_index"] = strconv.Itoa(pl.part.Index)
	}
	set("filename", pl.part.Filename)
	return intake.Origin{
		Source:   events.SourceRef{Kind: events.SourceIMAP, Name: w.cfg.Name},
		Metadata: md, Vendors: w.cfg.Vendors, Route: w.cfg.Route,
	}
}

// maxMetadataValue keeps a received event well under JetStream's 1 MiB per message even for a
// mail to a thousand recipients.
const maxMetadataValue = 2000

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func describePart(pl *partPlan) string {
	switch {
	case pl.part.Kind == kindEML:
		return "the message as .eml"
	case pl.part.Kind == kindMail:
		return "the message"
	case pl.part.Filename != "":
		return fmt.Sprintf("part %d (%s)", pl.part.Index, pl.part.Filename)
	}
	return fmt.Sprintf("part %d (%s)", pl.part.Index, pl.part.DeclaredType)
}
