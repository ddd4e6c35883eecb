package imap_test

import (
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"github.com/ingest-dev/ingest/internal/testservers"
)

// dovecot is a throw-away Dovecot (internal/testservers) with the test account.
type dovecot struct {
	*testservers.Dovecot
	addr string
}

type dovecotOptions struct {
	// capability, when set, replaces what Dovecot announces after login, to play a server
	// without MOVE or UIDPLUS.
	capability string
}

// dovecotCapability is what Dovecot 2.3 announces after login.
const dovecotCapability = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES " +
	"THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS " +
	"LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY " +
	"MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+"

// startDovecot starts one. Without Dovecot installed the test is skipped, loudly, unless
// INGEST_REQUIRE_SERVERS is set (CI), where it fails.
func startDovecot(t testing.TB, opt dovecotOptions) *dovecot {
	t.Helper()
	d := testservers.StartDovecot(t, testservers.DovecotOptions{User: testUser, Pass: testPass, Capability: opt.capability})
	return &dovecot{Dovecot: d, addr: d.Addr()}
}

func (d *dovecot) log() string { return d.Log() }

func (d *dovecot) address() string { return d.addr }

func (d *dovecot) deliver(t testing.TB, mailbox string, raw []byte, flags ...goimap.Flag) {
	t.Helper()
	d.Append(t, mailbox, flags, raw)
}

// appendMails APPENDs raws to mailbox over one connection, creating the mailbox if needed.
func (d *dovecot) appendMails(t testing.TB, mailbox string, raws ...[]byte) {
	t.Helper()
	d.Append(t, mailbox, nil, raws...)
}

func (d *dovecot) appendFlagged(t testing.TB, mailbox string, flags []goimap.Flag, raws ...[]byte) {
	t.Helper()
	d.Append(t, mailbox, flags, raws...)
}

func freePort(t testing.TB) int { return testservers.FreePort(t) }
