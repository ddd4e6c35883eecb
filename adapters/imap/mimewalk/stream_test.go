package mimewalk_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"runtime"
	"testing"

	"github.com/ingest-dev/ingest/adapters/imap/mimewalk"
)

// A 50 MiB attachment goes through Walk without the heap growing by anything like its size:
// bodies stream from the reader, which itself generates the mail as it is read.
func TestStreaming50MiB(t *testing.T) {
	const size = 50 << 20
	const maxGrowth = 16 << 20

	want := sha256.New()
	if _, err := io.Copy(want, &patternReader{n: size}); err != nil {
		t.Fatal(err)
	}

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	var peak uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapAlloc)
	}

	var sizes []int64
	var sums [][]byte
	_, res, err := mimewalk.Walk(bigMail(size), mimewalk.Limits{}, mimewalk.Options{}, func(p mimewalk.Part) error {
		h := sha256.New()
		buf := make([]byte, 32<<10)
		var n int64
		for {
			m, err := p.Body.Read(buf)
			h.Write(buf[:m])
			n += int64(m)
			if n%(4<<20) < int64(m) {
				sample() // every 4 MiB or so
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		sample()
		sizes = append(sizes, n)
		sums = append(sums, h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Parts != 2 || sizes[0] != size || !bytes.Equal(sums[0], want.Sum(nil)) {
		t.Fatalf("parts %d, first part %d bytes, digest match %v", res.Parts, sizes[0], bytes.Equal(sums[0], want.Sum(nil)))
	}
	if peak > before && peak-before > maxGrowth {
		t.Fatalf("heap grew by %d MiB while streaming a %d MiB part", (peak-before)>>20, size>>20)
	}
	t.Logf("heap before %d KiB, peak during the walk %d KiB", before>>10, peak>>10)
}
