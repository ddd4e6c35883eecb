package events

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrBlobNotFound is returned for a key the store does not hold.
var ErrBlobNotFound = errors.New("no stored bytes under this key")

// Blobs streams document bytes into and out of the JetStream Object Store. Nothing here holds a
// whole document in memory: writes go out chunk by chunk, reads come in chunk by chunk.
type Blobs struct {
	obs jetstream.ObjectStore
	// stream is the store's stream, and chunks the subject prefix of its chunks: a document
	// stored in one chunk is read with one get of that chunk (see Open).
	stream    jetstream.Stream
	chunks    string
	chunkSize int
	// heads holds chunk-sized buffers for the first read of a Put.
	heads sync.Pool
}

// preferredChunk is the Object Store chunk size: large enough that a 64 MiB document is 256
// messages, small enough to stay well under the servers' default 1 MiB max_payload.
const preferredChunk = 256 << 10

func newBlobs(obs jetstream.ObjectStore, bucket string, stream jetstream.Stream, nc *nats.Conn) *Blobs {
	chunk := preferredChunk
	// A server configured with a smaller max_payload would refuse our chunks; leave room for headers.
	if mp := int(nc.MaxPayload()); mp > 0 && mp-4096 < chunk {
		chunk = max(mp-4096, 1024)
	}
	// The chunk subjects are the Object Store's documented layout (ADR-20):
	// $O.<bucket>.C.<object nuid>.
	b := &Blobs{obs: obs, stream: stream, chunks: "$O." + bucket + ".C.", chunkSize: chunk}
	b.heads.New = func() any { buf := make([]byte, chunk); return &buf }
	return b
}

// BlobInfo describes stored bytes.
type BlobInfo struct {
	Key    string
	Size   int64
	SHA256 string // hex
}

// Put streams r into the store under key. If r fails (a client hangs up, a size limit trips),
// the partial object is removed and r's error is returned unwrapped in the chain.
//
// The first chunk is read before the store is called: the Object Store allocates a buffer of the
// chunk size for every Put, so a document that fits in one chunk (most do) is stored with a chunk
// of its own size — 100 KiB of garbage per 100 KiB document instead of 256 KiB.
func (b *Blobs) Put(ctx context.Context, key string, r io.Reader, meta map[string]string) (BlobInfo, error) {
	head := b.heads.Get().(*[]byte)
	defer b.heads.Put(head)
	n, err := (&fullReader{r: r}).Read(*head)
	chunk, body := b.chunkSize, io.Reader(&fullReader{r: io.MultiReader(bytes.NewReader((*head)[:n]), r)})
	switch {
	case err == io.EOF:
		chunk, body = max(n, 1), bytes.NewReader((*head)[:n])
	case err != nil:
		return BlobInfo{}, fmt.Errorf("store bytes under %s: %w", key, err)
	}
	info, err := b.obs.Put(ctx, jetstream.ObjectMeta{
		Name:     key,
		Metadata: meta,
		Opts:     &jetstream.ObjectMetaOptions{ChunkSize: uint32(chunk)},
	}, body)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("store bytes under %s: %w", key, err)
	}
	sum, err := digestHex(info.Digest)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("store bytes under %s: %w", key, err)
	}
	return BlobInfo{Key: key, Size: int64(info.Size), SHA256: sum}, nil
}

// maxDownload bounds one read of stored bytes. The Object Store ties a download to its context and
// gives it 5 s when the context has no deadline, which is too short for a large document on a slow
// client.
const maxDownload = 30 * time.Minute

// Open returns a reader of the bytes under key. The digest is checked at EOF: a reader that returns
// io.EOF has delivered exactly the bytes stored. Close it when done.
//
// A document stored in one chunk (most are: a chunk is 256 KiB) is read with one get of that
// chunk. The Object Store's own Get creates and deletes a consumer per read, which cost the
// server more than the read itself.
func (b *Blobs) Open(ctx context.Context, key string) (io.ReadCloser, BlobInfo, error) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), maxDownload)
	// Waiting on NATS has its own bound: a read that started while a cluster elected a leader
	// must not hold its caller (and its vendor slot) for the whole download time.
	stuck := time.AfterFunc(stallTimeout, cancel)
	info, err := b.obs.GetInfo(dctx, key)
	if err == nil && info.Chunks <= 1 && info.Size <= uint64(b.chunkSize) && (info.Opts == nil || info.Opts.Link == nil) {
		var r io.ReadCloser
		if r, err = b.readSmall(dctx, info); err == nil || !errors.Is(err, jetstream.ErrMsgNotFound) {
			stuck.Stop()
			cancel()
			if err != nil {
				return nil, BlobInfo{}, fmt.Errorf("read bytes under %s: %w", key, err)
			}
			sum, _ := digestHex(info.Digest)
			return r, BlobInfo{Key: key, Size: int64(info.Size), SHA256: sum}, nil
		}
		// A cluster node that has the object's description but not yet its chunk (a direct
		// get answered by a lagging follower): the Object Store's own read asks the leader.
	}
	var res jetstream.ObjectResult
	if err == nil {
		res, err = b.obs.Get(dctx, key)
	}
	stuck.Stop()
	if err != nil {
		cancel()
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, BlobInfo{}, fmt.Errorf("%s: %w", key, ErrBlobNotFound)
		}
		return nil, BlobInfo{}, fmt.Errorf("read bytes under %s: %w", key, err)
	}
	if info, err = res.Info(); err != nil {
		res.Close()
		cancel()
		return nil, BlobInfo{}, fmt.Errorf("read bytes under %s: %w", key, err)
	}
	sum, _ := digestHex(info.Digest)
	// The caller's ctx still cancels the read (a client that hangs up), the download bound stays.
	stop := context.AfterFunc(ctx, cancel)
	return &blobReader{ObjectResult: res, stuck: stuck, done: func() { stop(); stuck.Stop(); cancel() }},
		BlobInfo{Key: key, Size: int64(info.Size), SHA256: sum}, nil
}

// readSmall reads an object of at most one chunk with one get, and checks it against its
// description as the Object Store's reader does at EOF.
func (b *Blobs) readSmall(ctx context.Context, info *jetstream.ObjectInfo) (io.ReadCloser, error) {
	var data []byte
	if info.Size > 0 {
		m, err := b.stream.GetLastMsgForSubject(ctx, b.chunks+info.NUID)
		if err != nil {
			return nil, err
		}
		data = m.Data
	}
	sum := sha256.Sum256(data)
	if uint64(len(data)) != info.Size || "SHA-256="+base64.URLEncoding.EncodeToString(sum[:]) != info.Digest {
		return nil, fmt.Errorf("the stored bytes do not match their description (%d bytes, %s): %w",
			info.Size, info.Digest, jetstream.ErrDigestMismatch)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// stallTimeout bounds each wait on NATS during a download (opening it, each read): a store
// that gives nothing for this long is not coming back in time, and the read fails instead of
// hanging. Time the reader's own caller takes between reads does not count.
const stallTimeout = time.Minute

// Info describes the bytes under key without reading them: ErrBlobNotFound when there are none;
// any other error means the store could not be asked.
func (b *Blobs) Info(ctx context.Context, key string) (BlobInfo, error) {
	info, err := b.obs.GetInfo(ctx, key)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return BlobInfo{}, fmt.Errorf("%s: %w", key, ErrBlobNotFound)
	}
	if err != nil {
		return BlobInfo{}, fmt.Errorf("look up bytes under %s: %w", key, err)
	}
	sum, err := digestHex(info.Digest)
	if err != nil {
		return BlobInfo{}, fmt.Errorf("look up bytes under %s: %w", key, err)
	}
	return BlobInfo{Key: key, Size: int64(info.Size), SHA256: sum}, nil
}

// Delete removes the bytes under key; a missing key is not an error.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	if err := b.obs.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete bytes under %s: %w", key, err)
	}
	return nil
}

type blobReader struct {
	jetstream.ObjectResult
	stuck *time.Timer // cancels the download when one Read waits longer than stallTimeout
	done  func()
}

func (r *blobReader) Read(p []byte) (int, error) {
	r.stuck.Reset(stallTimeout)
	n, err := r.ObjectResult.Read(p)
	r.stuck.Stop()
	return n, err
}

func (r *blobReader) Close() error {
	err := r.ObjectResult.Close()
	r.done()
	return err
}

// fullReader fills each Read buffer completely (short only at EOF). The Object Store writes one
// chunk per Read, so a source that returns 4 KiB at a time (a TLS or multipart reader) would
// otherwise make 256 messages per MiB instead of 4.
type fullReader struct{ r io.Reader }

func (f *fullReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := f.r.Read(p[n:])
		n += k
		if err != nil {
			// Not io.ReadFull: it turns a source's io.ErrUnexpectedEOF (a truncated multipart
			// part) into a plain short read, and a truncated upload must fail.
			return n, err
		}
	}
	return n, nil
}

func digestHex(d string) (string, error) {
	raw, ok := strings.CutPrefix(d, "SHA-256=")
	if !ok {
		return "", fmt.Errorf("unexpected object digest %q", d)
	}
	sum, err := base64.URLEncoding.DecodeString(raw)
	if err != nil {
		return "", fmt.Errorf("unexpected object digest %q: %w", d, err)
	}
	return hex.EncodeToString(sum), nil
}
