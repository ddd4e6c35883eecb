package imap_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	imapsrc "github.com/ingest-dev/ingest/adapters/imap"
	"github.com/ingest-dev/ingest/events/eventstest"
)

var (
	capsFull        = goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapIMAP4rev2: {}}
	capsNoMove      = goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapUIDPlus: {}}
	capsNoMoveNoUID = goimap.CapSet{goimap.CapIMAP4rev1: {}}
)

// postActionCase is one post-action with what the mailbox must look like afterwards. Every case
// has, besides the mail to ingest ("Invoice"), a mail the user marked \Deleted ("Trash") with
// nothing to ingest: it must survive every action (no plain EXPUNGE, ever).
type postActionCase struct {
	name  string
	caps  goimap.CapSet
	after imapsrc.After
	// check returns what is wrong with INBOX and the Done folder ("" when right).
	check func(inbox, done []msgState) string
}

func postActionCases() []postActionCase {
	return []postActionCase{
		{"seen", capsFull, imapsrc.After{Action: imapsrc.ActionSeen}, func(in, done []msgState) string {
			return expect(in, "Invoice", goimap.FlagSeen)
		}},
		{"flag", capsFull, imapsrc.After{Action: imapsrc.ActionFlag, Keyword: "$Ingested"}, func(in, done []msgState) string {
			if s := expect(in, "Invoice", "$Ingested"); s != "" {
				return s
			}
			return expectNot(in, "Invoice", goimap.FlagSeen)
		}},
		{"delete", capsFull, imapsrc.After{Action: imapsrc.ActionDelete}, func(in, done []msgState) string {
			return absent(in, "Invoice")
		}},
		{"delete without UIDPLUS only marks", capsNoMoveNoUID, imapsrc.After{Action: imapsrc.ActionDelete}, func(in, done []msgState) string {
			return expect(in, "Invoice", goimap.FlagDeleted)
		}},
		{"move, creating the folder", capsFull, imapsrc.After{Action: imapsrc.ActionMove, Folder: "Done"}, func(in, done []msgState) string {
			return first(absent(in, "Invoice"), present(done, "Invoice"))
		}},
		{"move without MOVE: COPY and UID EXPUNGE", capsNoMove, imapsrc.After{Action: imapsrc.ActionMove, Folder: "Done"}, func(in, done []msgState) string {
			return first(absent(in, "Invoice"), present(done, "Invoice"))
		}},
		{"move without MOVE and UIDPLUS: COPY and \\Deleted", capsNoMoveNoUID, imapsrc.After{Action: imapsrc.ActionMove, Folder: "Done"}, func(in, done []msgState) string {
			return first(expect(in, "Invoice", goimap.FlagDeleted), present(done, "Invoice"))
		}},
		{"none", capsFull, imapsrc.After{Action: imapsrc.ActionNone}, func(in, done []msgState) string {
			return first(expectNot(in, "Invoice", goimap.FlagSeen), expectNot(in, "Invoice", goimap.FlagDeleted))
		}},
	}
}

func TestPostActions(t *testing.T) {
	for _, tt := range postActionCases() {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			srv := startMemServer(t, memOptions{caps: tt.caps})
			srv.appendMail(t, "INBOX", message{subject: "Trash", id: "trash@x"}.build(), goimap.FlagDeleted)
			srv.appendMail(t, "INBOX", simple("Invoice"))
			cfg := e.config(srv.addr)
			cfg.After = tt.after
			began := time.Now()
			r := start(t, cfg)
			e.waitReceived(1, 10*time.Second)
			eventstest.WaitFor(t, 10*time.Second, "the pass to be recorded", func() bool { return !r.w.LastPass().Before(began) })
			look := func() string {
				in := mailbox(t, srv.addr, testUser, testPass, "INBOX")
				done := mailbox(t, srv.addr, testUser, testPass, "Done")
				// Whatever the action, the user's own deleted mail is still there.
				return first(tt.check(in, done), expect(in, "Trash", goimap.FlagDeleted))
			}
			eventstest.WaitFor(t, 10*time.Second, "the post-action", func() bool {
				return look() == "" && e.counter("ingest_imap_mails_seen_total", nil) == 2
			})
			r.stop()
			if problem := look(); problem != "" {
				t.Error(problem)
			}
			if n := e.published(); n != 1 {
				t.Errorf("published %d documents, want 1", n)
			}
		})
	}
}

func find(ms []msgState, subject string) *msgState {
	i := slices.IndexFunc(ms, func(m msgState) bool { return m.subject == subject })
	if i < 0 {
		return nil
	}
	return &ms[i]
}

func expect(ms []msgState, subject string, f goimap.Flag) string {
	m := find(ms, subject)
	switch {
	case m == nil:
		return fmt.Sprintf("%q is missing", subject)
	case !m.has(f):
		return fmt.Sprintf("%q lacks %s (flags %v)", subject, f, m.flags)
	}
	return ""
}

func expectNot(ms []msgState, subject string, f goimap.Flag) string {
	m := find(ms, subject)
	switch {
	case m == nil:
		return fmt.Sprintf("%q is missing", subject)
	case m.has(f):
		return fmt.Sprintf("%q has %s (flags %v)", subject, f, m.flags)
	}
	return ""
}

func absent(ms []msgState, subject string) string {
	if find(ms, subject) != nil {
		return fmt.Sprintf("%q is still there", subject)
	}
	return ""
}

func present(ms []msgState, subject string) string {
	if find(ms, subject) == nil {
		return fmt.Sprintf("%q is not there", subject)
	}
	return ""
}

func first(problems ...string) string {
	for _, p := range problems {
		if p != "" {
			return p
		}
	}
	return ""
}

// A batch's post-action is one STORE for all its mails; when the server refuses it for one of
// them, the others still get theirs (mail by mail) and the refused one is passed over, counted.
func TestPostActionBatchedAndRefusedForOne(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refuse=%v", refuse), func(t *testing.T) {
			e := newEnv(t)
			var stores atomic.Int32
			srv := startMemServer(t, memOptions{caps: capsFull, wrap: func(s imapserver.SessionIMAP4rev2) imapserver.Session {
				return &refusingStore{SessionIMAP4rev2: s, stores: &stores, refuse: refuse}
			}})
			for _, s := range []string{"One", "Two", "Three"} {
				srv.appendMail(t, "INBOX", simple(s))
			}
			cfg := e.config(srv.addr)
			cfg.After = imapsrc.After{Action: imapsrc.ActionFlag, Keyword: "$Ingested"}
			r := start(t, cfg)
			e.waitReceived(3, 10*time.Second)
			eventstest.WaitFor(t, 10*time.Second, "the post-actions", func() bool {
				in := mailbox(t, srv.addr, testUser, testPass, "INBOX")
				return expect(in, "One", "$Ingested") == "" && expect(in, "Three", "$Ingested") == ""
			})
			r.stop()
			in := mailbox(t, srv.addr, testUser, testPass, "INBOX")
			wantStores := int32(1)
			if refuse {
				// The batch's STORE, then one per mail.
				wantStores = 4
				if problem := expectNot(in, "Two", "$Ingested"); problem != "" {
					t.Error(problem)
				}
			} else if problem := expect(in, "Two", "$Ingested"); problem != "" {
				t.Error(problem)
			}
			if got := stores.Load(); got != wantStores {
				t.Errorf("%d STORE commands, want %d", got, wantStores)
			}
			if n := e.published(); n != 3 {
				t.Errorf("published %d documents, want 3", n)
			}
		})
	}
}

// refusingStore counts STOREs and, when refuse is set, answers NO to any that touches UID 2.
type refusingStore struct {
	imapserver.SessionIMAP4rev2
	stores *atomic.Int32
	refuse bool
}

func (s *refusingStore) Store(w *imapserver.FetchWriter, set goimap.NumSet, flags *goimap.StoreFlags, opts *goimap.StoreOptions) error {
	s.stores.Add(1)
	if uids, ok := set.(goimap.UIDSet); ok && s.refuse && uids.Contains(2) {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Text: "mail 2 is read-only"}
	}
	return s.SessionIMAP4rev2.Store(w, set, flags, opts)
}
