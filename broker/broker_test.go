package broker_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ingest-dev/ingest/broker"
	"github.com/ingest-dev/ingest/events/eventstest"
)

func open(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	b, err := broker.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return b
}

func TestEmbeddedTakesAFreePortWhenTheConfiguredOneIsTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()

	b := open(t, broker.Config{Embedded: broker.Embedded{Listen: taken, StoreDir: t.TempDir(), MaxStore: 1 << 30, MaxMemory: 32 << 20}})
	if !b.Embedded() {
		t.Fatal("not embedded")
	}
	if strings.HasSuffix(b.URL(), taken) || !strings.HasPrefix(b.URL(), "nats://127.0.0.1:") {
		t.Fatalf("URL %q: should be another port on 127.0.0.1", b.URL())
	}
	// Another program reaches it over TCP at the URL it announces, JetStream included.
	nc, err := nats.Connect(b.URL())
	if err != nil {
		t.Fatalf("connect to the announced URL: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream over TCP: %v", err)
	}
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func TestEmbeddedKeepsDataAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := broker.Config{Embedded: broker.Embedded{Listen: "127.0.0.1:0", StoreDir: dir, MaxStore: 1 << 30, MaxMemory: 32 << 20}}
	b1, err := broker.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(b1.Conn())
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "persist", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	b1.Close(ctx)

	b2 := open(t, cfg)
	js2, _ := jetstream.New(b2.Conn())
	kv2, err := js2.KeyValue(ctx, "persist")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv2.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("after restart: %v %v", e, err)
	}
}

func TestExternalUnreachableIsNotReadyButOpen(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	b := open(t, broker.Config{URL: "nats://" + addr})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := b.Ready(ctx); err == nil {
		t.Fatal("Ready with no server")
	}
	if b.Embedded() || b.URL() != "nats://"+addr {
		t.Fatalf("embedded=%v url=%q", b.Embedded(), b.URL())
	}
}

func TestExternalServer(t *testing.T) {
	url := eventstest.ExternalURL(t)
	b := open(t, broker.Config{URL: url})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eventstest.WaitFor(t, 10*time.Second, "the connection", b.Conn().IsConnected)
	if err := b.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func TestEmbeddedNeedsAStoreDir(t *testing.T) {
	if _, err := broker.Open(context.Background(), broker.Config{Embedded: broker.Embedded{Listen: "127.0.0.1:0"}}); err == nil {
		t.Fatal("opened without a storage directory")
	}
}

// The port taken instead of a busy one is remembered: after a restart (the configured port still
// busy) the server is where tail and subscribers found it before.
func TestEmbeddedKeepsItsFallbackPortAcrossRestarts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	cfg := broker.Config{Embedded: broker.Embedded{Listen: ln.Addr().String(), StoreDir: filepath.Join(dir, "nats"),
		PortFile: filepath.Join(dir, "nats-port"), MaxStore: 1 << 30, MaxMemory: 32 << 20}}
	b, err := broker.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := b.URL()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.Close(ctx)

	b2 := open(t, cfg)
	if b2.URL() != first {
		t.Fatalf("after the restart the server is at %s, before it was at %s", b2.URL(), first)
	}
}
