package documine

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	v, err := decode([]byte(`{"data":{"fileId":"f1","n":42,"files":[{"id":"a"},{"id":"b"}],"one":["x"],"two":["x","y"],"null":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		keys    []string
		want    string
		wantErr string
	}{
		{[]string{"data.fileId"}, "f1", ""},
		{[]string{"data.n"}, "42", ""},
		{[]string{"data.files.1.id"}, "b", ""},
		{[]string{"missing", "data.null", "data.fileId"}, "f1", ""}, // the first present wins; null is absent
		{[]string{"data.one"}, "x", ""},
		{[]string{"data.two"}, "", "data.two holds 2 ids where one was expected"},
		{[]string{"data.files"}, "", "data.files holds 2 ids"},
		{[]string{"data"}, "", "data is not an id"},
		{[]string{"data.files.2.id", "data.fileId.x", "data.files.-1"}, "", "none of the configured id keys (data.files.2.id, data.fileId.x, data.files.-1)"},
	}
	for _, tt := range tests {
		got, err := idAt(v, tt.keys)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: got %q %v, want error %q", tt.keys, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%v: got %q %v, want %q", tt.keys, got, err, tt.want)
		}
	}
	if _, err := decode([]byte(`{} {}`)); err == nil {
		t.Error("two JSON values read as one")
	}
}

func TestExpandBody(t *testing.T) {
	b := expandBody(`{"fileIds":["{fileId}"],"dossier":"{dossierId}"}`, map[string]string{"{fileId}": `a"b\`, "{dossierId}": "d"})
	var got struct {
		FileIDs []string `json:"fileIds"`
		Dossier string   `json:"dossier"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.FileIDs[0] != `a"b\` || got.Dossier != "d" {
		t.Fatalf("%s → %+v %v", b, got, err)
	}
}

func TestPackageIDsBounded(t *testing.T) {
	p := newPackageIDs(2)
	p.put("a", "1")
	p.put("b", "2")
	p.put("b", "2b") // an update takes no room
	p.put("c", "3")
	if len(p.m) != 2 || p.get("c") != "3" {
		t.Fatalf("%v", p.m)
	}
	if p.forget("c") != "3" || p.get("c") != "" {
		t.Fatal("forget")
	}
}
