package imap

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// fetched is one downloaded mail.
type fetched struct {
	uid      goimap.UID
	size     int64 // RFC822.SIZE
	flags    []goimap.Flag
	internal time.Time // INTERNALDATE: when the server got it
	raw      *spool
}

// fetchBatch is the most mails fetched by one command: enough to keep a remote server's round
// trips off the total, few enough that the in-memory spools stay small.
const fetchBatch = 32

// fetchMails downloads uids. Only UID RFC822.SIZE FLAGS INTERNALDATE BODY.PEEK[] are asked for:
// go-imap's connection dies on any response it cannot parse, and ENVELOPE and BODYSTRUCTURE are
// where servers get creative; the message is parsed here instead. PEEK leaves \Seen alone until
// the post-action. Each literal is spooled as it arrives, so the server is never kept waiting.
// The result is in UID order; on error, nothing is returned and every spool is released.
func fetchMails(c *imapclient.Client, uids []goimap.UID, spoolDir string) (out []*fetched, err error) {
	defer func() {
		if err != nil {
			for _, f := range out {
				if f.raw != nil {
					f.raw.Close()
				}
			}
			out = nil
		}
	}()
	fc := c.Fetch(goimap.UIDSetNum(uids...), &goimap.FetchOptions{
		UID: true, RFC822Size: true, Flags: true, InternalDate: true,
		BodySection: []*goimap.FetchItemBodySection{{Peek: true}},
	})
	defer fc.Close()
	inMemory := int64(0)
	for msg := fc.Next(); msg != nil; msg = fc.Next() {
		f := &fetched{}
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				f.uid = it.UID
			case imapclient.FetchItemDataRFC822Size:
				f.size = it.Size
			case imapclient.FetchItemDataFlags:
				f.flags = it.Flags
			case imapclient.FetchItemDataInternalDate:
				f.internal = it.Time
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					continue // BODY[] NIL: reported as missing below
				}
				// The literal must be read before the next item, or go-imap discards it.
				size := it.Literal.Size()
				mem := size <= memSpoolMax && inMemory+size <= memSpoolBudget
				sp, err := newSpool(it.Literal, size, mem, "")
				if err != nil {
					// The connection broke inside the literal. Close it, which waits for go-imap's
					// reader goroutine to end, before fc.Close: that one reads the rest of the literal,
					// and would otherwise race the reader goroutine on the socket.
					c.Close()
					out = append(out, f)
					return out, err
				}
				if mem {
					inMemory += size
				}
				f.raw = sp
			}
		}
		out = append(out, f)
	}
	if err := fc.Close(); err != nil {
		return out, fmt.Errorf("fetch mails %v: %w", compactUIDs(uids), err)
	}
	// A server that sends a message's UID after its literal makes go-imap treat the message as
	// unsolicited, so it is missing here; so is a mail someone deleted meanwhile. Both are
	// reported, not skipped: the caller checks which mails still exist.
	out = slices.DeleteFunc(out, func(f *fetched) bool {
		if f.raw == nil || !slices.Contains(uids, f.uid) {
			if f.raw != nil {
				f.raw.Close()
			}
			return true
		}
		return false
	})
	slices.SortFunc(out, func(a, b *fetched) int { return cmp.Compare(a.uid, b.uid) })
	return out, nil
}

// compactUIDs writes UIDs the IMAP way (1:4,7) for messages.
func compactUIDs(uids []goimap.UID) string { return goimap.UIDSetNum(uids...).String() }
