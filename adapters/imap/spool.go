package imap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// A spool holds one fetched message so that it can be read several times (the MIME walk that
// plans, the one that stores, the .eml document, the raw bytes of a rejection) without the IMAP
// connection waiting on the Object Store: the literal is read off the socket at once, which also
// keeps clear of go-imap's 5-minute literal deadline. Small messages stay in memory; larger ones
// go to a temporary file that is unlinked right after it is created, so that nothing is left
// behind even if the process dies.
type spool struct {
	size      int64 // bytes spooled
	truncated bool  // the message was larger than maxSpoolBytes; only its head is kept
	sha256    string
	mem       []byte
	file      *os.File
}

const (
	// memSpoolMax is the largest message kept in memory; memSpoolBudget caps a fetch batch's
	// messages in memory together.
	memSpoolMax    = 2 << 20
	memSpoolBudget = 16 << 20
	// maxSpoolBytes is the most kept of one message: a message this large is over any sensible
	// MIME limit and is rejected, keeping this much of it.
	maxSpoolBytes = 256 << 20
)

// newSpool reads all of lit (size bytes announced) into memory when inMemory, else into a
// temporary file in dir.
func newSpool(lit io.Reader, size int64, inMemory bool, dir string) (*spool, error) {
	h := sha256.New()
	sp := &spool{}
	keep := min(size, maxSpoolBytes)
	src := io.TeeReader(io.LimitReader(lit, keep), h)
	var err error
	if inMemory {
		sp.mem = make([]byte, keep)
		var n int
		n, err = io.ReadFull(src, sp.mem)
		sp.mem, sp.size = sp.mem[:n], int64(n)
	} else {
		sp.file, err = tempFile(dir)
		if err != nil {
			return nil, err
		}
		sp.size, err = io.CopyBuffer(sp.file, src, make([]byte, 256<<10))
	}
	if err == nil && size > keep {
		// Read the rest off the socket so the connection stays usable.
		_, err = io.Copy(io.Discard, lit)
		sp.truncated = true
	}
	if err == nil && sp.size != keep {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("read the message from the server: %w", err)
	}
	sp.sha256 = hex.EncodeToString(h.Sum(nil))
	return sp, nil
}

// tempFile creates a file and unlinks it at once where the system allows (Unix): the open file
// stays readable and disappears with the process.
func tempFile(dir string) (*os.File, error) {
	f, err := os.CreateTemp(dir, "ingest-imap-*.eml")
	if err != nil {
		return nil, fmt.Errorf("spool a large message to disk: %w", err)
	}
	_ = os.Remove(f.Name()) // fails on Windows; Close removes it there
	return f, nil
}

// Reader returns a fresh reader over the whole spooled message.
func (s *spool) Reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size)
	}
	return bytes.NewReader(s.mem)
}

// Close releases the memory or the file.
func (s *spool) Close() {
	s.mem = nil
	if s.file != nil {
		_ = s.file.Close()
		_ = os.Remove(s.file.Name()) // already gone on Unix
		s.file = nil
	}
}
