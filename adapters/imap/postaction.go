package imap

import (
	"errors"
	"fmt"
	"slices"

	goimap "github.com/emersion/go-imap/v2"
)

// afterIngest runs the configured post-action on a mail whose documents all have their PubAck.
// It is idempotent: after a crash before the checkpoint it simply runs again.
func (s *session) afterIngest(uid goimap.UID) error {
	a := s.w.cfg.After
	set := goimap.UIDSetNum(uid)
	var err error
	switch a.Action {
	case ActionNone:
		return nil
	case ActionSeen:
		err = s.addFlags(set, goimap.FlagSeen)
	case ActionFlag:
		err = s.addFlags(set, goimap.Flag(a.Keyword))
	case ActionDelete:
		if err = s.addFlags(set, goimap.FlagDeleted); err == nil {
			err = s.expunge(set)
		}
	case ActionMove:
		err = s.move(set, a.Folder)
		if isCode(err, goimap.ResponseCodeTryCreate) {
			// The folder went away since we made sure of it.
			if err = s.ensureFolder(a.Folder); err == nil {
				err = s.move(set, a.Folder)
			}
		}
	}
	return s.actionResult(err, uid, a.Action)
}

// afterReject marks a mail that was announced as rejected, and leaves it where it is, unread.
func (s *session) afterReject(uid goimap.UID) error {
	return s.actionResult(s.addFlags(goimap.UIDSetNum(uid), RejectedKeyword), uid, "flag "+RejectedKeyword)
}

// actionResult separates a server's refusal (NO/BAD: retrying will not help, the mail is
// ingested, so the watcher goes on and says so) from a lost connection (try again).
func (s *session) actionResult(err error, uid goimap.UID, action string) error {
	var refusal *goimap.Error
	if errors.As(err, &refusal) {
		s.w.metrics.pollErrors.Inc()
		s.w.log.Warn("the server refused the post-action; the mail's documents are ingested and it will not be fetched again",
			"uid", uid, "action", action, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("post-action %s on mail %d: %w", action, uid, err)
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
