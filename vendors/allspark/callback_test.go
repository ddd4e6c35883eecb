package allspark_test

import (
	"testing"

	"github.com/ingest-dev/ingest/vendors/allspark"
)

func TestCallbackIDs(t *testing.T) {
	c, err := allspark.New(allspark.Config{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		body string
		want string // "" = error
	}{
		{`{"case_id": 42, "status": "completed", "files": []}`, "42"},
		{`{"case_id": "42"}`, "42"},
		{`{"case_id": " 7 "}`, "7"},
		{`{"case_id": 0}`, ""},
		{`{"case_id": -3}`, ""},
		{`{"case_id": "../1"}`, ""},
		{`{"case_id": null}`, ""},
		{`{"status": "completed"}`, ""},
		{`[1,2]`, ""},
		{`not json`, ""},
	}
	for _, tc := range cases {
		ids, err := c.CallbackIDs([]byte(tc.body))
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: accepted as %v", tc.body, ids)
			}
			continue
		}
		if err != nil || len(ids) != 1 || ids[0] != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.body, ids, err, tc.want)
		}
	}
}
