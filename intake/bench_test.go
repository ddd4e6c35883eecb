package intake

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func BenchmarkSniff(b *testing.B) {
	heads := [][]byte{[]byte("%PDF-1.7\n"), []byte(strings.Repeat("plain text line\n", 40)), []byte("PK\x03\x04zip")}
	for b.Loop() {
		for _, h := range heads {
			Sniff(h, false)
		}
	}
}

func BenchmarkTextReader(b *testing.B) {
	text := []byte(strings.Repeat("Rechnung Nr. 4711 — Betrag 12,50 €\n", 30000)) // ~1 MiB
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, err := io.Copy(io.Discard, &textReader{r: bytes.NewReader(text)}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheck100KiB(b *testing.B) {
	doc := bytes.Repeat([]byte("x"), 100<<10)
	copy(doc, "%PDF-1.7\n")
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := Check("id", "a.pdf", bytes.NewReader(doc), 1<<20); err != nil {
			b.Fatal(err)
		}
	}
}
