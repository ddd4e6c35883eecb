package allspark_test

import (
	"strconv"
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
		// Every plausible reading of "an API call with the data".
		{`{"id": 9, "status": "completed"}`, "9"},
		{`{"case_id": 5, "id": 99}`, "5"}, // case_id wins
		{`{"event": "case.completed", "case": {"case_id": 11, "files": []}}`, "11"},
		{`{"case": {"id": "12"}}`, "12"},
		{`{"data": {"case_id": 13}}`, "13"},
		{`{"data": {"id": 14}}`, "14"},
		{`{"case_id": "15", "status": "completed"}`, "15"}, // a form post, as the receiver converts it
		{`{"data": [1]}`, ""},
		{`{"case": "16"}`, ""},
		{`{"data": {"case_id": "1 OR 1=1"}}`, ""},
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

// Whatever a callback carries, reading it never panics, and an id it yields is a plain positive
// number (it goes into a URL path).
func FuzzCallbackIDs(f *testing.F) {
	for _, s := range []string{`{"case_id": 42}`, `{"id": "7"}`, `{"case": {"id": 3}}`, `{"data": {"case_id": 1}}`,
		`{"data": {"id": null}}`, `{"case_id": 1e3}`, `{"case": [`, `"x"`, `{"case_id": "../../x"}`} {
		f.Add([]byte(s))
	}
	c, err := allspark.New(allspark.Config{APIKey: "k"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, err := c.CallbackIDs(body)
		if err != nil {
			return
		}
		for _, id := range ids {
			if n, err := strconv.ParseUint(id, 10, 64); err != nil || n == 0 || strconv.FormatUint(n, 10) != id {
				t.Fatalf("id %q from %q is not a plain positive number", id, body)
			}
		}
	})
}
