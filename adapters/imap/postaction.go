package imap

import (
	"errors"
	"fmt"
	"slices"

	goimap "github.com/emersion/go-imap/v2"
)

// afterIngest runs the configured post-action on mails whose documents all have their PubAck,
// as one command for all of them. It is idempotent: after a crash before the checkpoint it simply
// runs again.
func (s *session) afterIngest(uids ...goimap.UID) error {
	a := s.w.cfg.After
	if a.Action == ActionNone {
		return nil
	}
	return s.each(uids, a.Action, func(set goimap.UIDSet) error {
		switch a.Action {
		case ActionSeen:
			return s.addFlags(set, goimap.FlagSeen)
		case ActionFlag:
			return s.addFlags(set, goimap.Flag(a.Keyword))
		case ActionDelete:
			if err := s.addFlags(set, goimap.FlagDeleted); err != nil {
				return err
			}
			return s.expunge(set)
		case ActionMove:
			err := s.move(set, a.Folder)
			if isCode(err, goimap.ResponseCodeTryCreate) {
				// The folder went away since we made sure of it.
				if err = s.ensureFolder(a.Folder); err == nil {
					err = s.move(set, a.Folder)
				}
			}
			return err
		}
		return nil
	})
}

// afterReject marks mails that were announced as rejected, and leaves them where they are, unread.
func (s *session) afterReject(uids ...goimap.UID) error {
	return s.each(uids, "flag "+RejectedKeyword, func(set goimap.UIDSet) error { return s.addFlags(set, RejectedKeyword) })
}

// each runs action on all of uids in one command. When the server refuses it (NO/BAD) for
// several, it is run mail by mail, so that one mail the server will not touch neither holds the
// others back nor has them reported refused with it.
func (s *session) each(uids []goimap.UID, name string, action func(goimap.UIDSet) error) error {
	err := action(goimap.UIDSetNum(uids...))
	var refusal *goimap.Error
	if len(uids) == 1 || !errors.As(err, &refusal) {
		return s.actionResult(err, uids, name)
	}
	for _, uid := range uids {
		if err := s.actionResult(action(goimap.UIDSetNum(uid)), []goimap.UID{uid}, name); err != nil {
			return err
		}
	}
	return nil
}

// actionResult separates a server's refusal (NO/BAD: retrying will not help, the mail is
// ingested, so the watcher goes on and says so) from a lost connection (try again).
func (s *session) actionResult(err error, uids []goimap.UID, action string) error {
	var refusal *goimap.Error
	if errors.As(err, &refusal) {
		s.w.metrics.pollErrors.Inc()
		s.w.log.Warn("the server refused the post-action; the mail's documents are ingested and it will not be fetched again",
			"uids", compactUIDs(uids), "action", action, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("post-action %s on mails %s: %w", action, compactUIDs(uids), err)
	}
	return nil
}

func (s *session) addFlags(set goimap.UIDSet, flags ...goimap.Flag) error {
	return s.c.Store(set, &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close()
}

// expunge removes exactly the mails in set, which needs UID EXPUNGE (UIDPLUS, IMAP4rev2). A plain
// EXPUNGE would also remove every other mail someone marked \Deleted, so without UIDPLUS the mail
// stays marked for the user's client to expunge.
func (s *session) expunge(set goimap.UIDSet) error {
	if !s.c.Caps().Has(goimap.CapUIDPlus) {
		s.w.warnOnce("no-uidplus", "the server lacks UIDPLUS: processed mails are only marked \\Deleted, not expunged (a plain EXPUNGE would remove other people's deleted mail too)")
		return nil
	}
	return s.c.UIDExpunge(set).Close()
}

// move uses MOVE where the server has it; otherwise COPY, \Deleted and UID EXPUNGE. go-imap's own
// fallback sends a plain EXPUNGE when UIDPLUS is missing, hence our own.
func (s *session) move(set goimap.UIDSet, folder string) error {
	if s.c.Caps().Has(goimap.CapMove) {
		_, err := s.c.Move(set, folder).Wait()
		return err
	}
	if _, err := s.c.Copy(set, folder).Wait(); err != nil {
		return err
	}
	if err := s.addFlags(set, goimap.FlagDeleted); err != nil {
		return err
	}
	return s.expunge(set)
}

// ensureFolder creates the move target when it does not exist.
func (s *session) ensureFolder(folder string) error {
	list, err := s.c.List("", folder, nil).Collect()
	if err != nil {
		return fmt.Errorf("look for the folder %q: %w", folder, err)
	}
	if slices.ContainsFunc(list, func(d *goimap.ListData) bool { return d.Mailbox == folder }) {
		return nil
	}
	if err := s.c.Create(folder, nil).Wait(); err != nil && !isCode(err, goimap.ResponseCodeAlreadyExists) {
		return fmt.Errorf("create the folder %q for processed mail: %w", folder, err)
	}
	s.w.log.Info("created the folder for processed mail", "folder", folder)
	return nil
}

func isCode(err error, code goimap.ResponseCode) bool {
	var e *goimap.Error
	return errors.As(err, &e) && e.Code == code
}
