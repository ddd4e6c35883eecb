package simkit_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ingest-dev/ingest/vendors/simkit"
)

type rec struct{ N int }

func TestStoreSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim", "state.jsonl")
	s, got, _, err := simkit.OpenStore(path, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("fresh store: %v %v", got, err)
	}
	for i := range 5 {
		if err := s.Put(fmt.Sprint("job/", i), rec{i}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Put("job/1", rec{11}) // changed: newest now
	_ = s.Delete("job/3")
	// No Close: a killed process leaves what it wrote, plus a torn line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
	f.WriteString(`{"k":"job/9","v":{"N":`)
	f.Close()

	s2, got, order, err := simkit.OpenStore(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if want := []string{"job/0", "job/2", "job/4", "job/1"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	var r rec
	if json.Unmarshal(got["job/1"], &r) != nil || r.N != 11 || got["job/3"] != nil || got["job/9"] != nil {
		t.Fatalf("records %v", got)
	}
}

// A store keeps its newest MaxRecords: a sandbox does not grow without end.
func TestStoreIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.jsonl")
	s, _, _, _ := simkit.OpenStore(path, 3)
	for i := range 10 {
		_ = s.Put(fmt.Sprint("k", i), rec{i})
	}
	s.Close()
	s, got, order, err := simkit.OpenStore(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !slices.Equal(order, []string{"k7", "k8", "k9"}) || len(got) != 3 {
		t.Fatalf("kept %v", order)
	}
	st, _ := os.Stat(path)
	if st.Size() > 200 {
		t.Fatalf("the journal was not compacted: %d bytes", st.Size())
	}
}

func TestNilStoreDoesNothing(t *testing.T) {
	var s *simkit.Store
	if s.Put("k", rec{1}) != nil || s.Delete("k") != nil || s.Close() != nil {
		t.Fatal("a nil store must do nothing")
	}
}
