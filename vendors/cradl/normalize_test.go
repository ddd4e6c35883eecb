package cradl_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/vendors/cradl"
)

func ptrF(f float64) *float64 { return &f }
func ptrI(i int) *int         { return &i }

func TestNormalizePredictions(t *testing.T) {
	tests := []struct {
		name, body string
		want       []events.Field
		err        string
	}{
		{"v1 list, Cradl's order", `[{"label":"total_amount","value":"24.99","rawValue":"24,99","confidence":0.93,"page":0,"location":[0.1,0.2,0.3,0.4],"source":"model"},
			{"label":"invoice_id","value":"INV-1","confidence":0.5,"page":2}]`,
			[]events.Field{{Name: "total_amount", Value: "24.99", Confidence: ptrF(0.93), Page: ptrI(1)}, {Name: "invoice_id", Value: "INV-1", Confidence: ptrF(0.5), Page: ptrI(3)}}, ""},
		{"numbers as written, null, bool", `[{"label":"n","value":1.50},{"label":"z","value":null,"confidence":0.1},{"label":"b","value":true},{"label":"big","value":12345678901234567890}]`,
			[]events.Field{{Name: "n", Value: "1.50"}, {Name: "z", Value: "", Confidence: ptrF(0.1)}, {Name: "b", Value: "true"}, {Name: "big", Value: "12345678901234567890"}}, ""},
		{"line items", `[{"label":"line_items","value":[[{"label":"description","value":"Pens","confidence":0.8,"page":0},{"label":"amount","value":3}],[{"label":"description","value":"Ink"}]]}]`,
			[]events.Field{{Name: "line_items[0].description", Value: "Pens", Confidence: ptrF(0.8), Page: ptrI(1)}, {Name: "line_items[0].amount", Value: "3"},
				{Name: "line_items[1].description", Value: "Ink"}}, ""},
		{"line item rows as objects", `[{"label":"rows","value":[{"b":"2","a":{"value":"1","confidence":0.7}}]}]`,
			[]events.Field{{Name: "rows[0].a", Value: "1", Confidence: ptrF(0.7)}, {Name: "rows[0].b", Value: "2"}}, ""},
		{"object value kept as JSON", `[{"label":"addr","value":{"street":"Main","no":1}}]`,
			[]events.Field{{Name: "addr", Value: `{"no":1,"street":"Main"}`}}, ""},
		{"v2 object in label order", `{"total":{"value":"9.00","confidence":0.9,"page":1},"id":"A-1","items":[[{"label":"x","value":"y"}]]}`,
			[]events.Field{{Name: "id", Value: "A-1"}, {Name: "items[0].x", Value: "y"}, {Name: "total", Value: "9.00", Confidence: ptrF(0.9), Page: ptrI(2)}}, ""},
		{"odd confidence and page ignored", `[{"label":"a","value":"1","confidence":"high","page":1.5}]`, []events.Field{{Name: "a", Value: "1"}}, ""},
		{"empty list", `[]`, []events.Field{}, ""},
		{"null", `null`, []events.Field{}, ""},
		{"not a list", `"x"`, nil, "neither a list nor an object"},
		{"v2 empty label", `{"":1}`, nil, "empty label"},
		{"item not an object", `[1]`, nil, "prediction 0 is not an object"},
		{"no label", `[{"value":"1"}]`, nil, "prediction 0 has no label"},
		{"not JSON", `[{`, nil, "not JSON"},
		{"trailing data", `[] []`, nil, "not JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cradl.NormalizePredictions(json.RawMessage(tc.body))
			checkFields(t, got, err, tc.want, tc.err)
		})
	}
}

func TestNormalizeOutput(t *testing.T) {
	tests := []struct {
		name, body string
		want       []events.Field
		err        string
	}{
		{"validated first, then values they lack", `{"documentId":"d","values":{"total":"1.00","extra":"e","items":[{"desc":"a"}]},
			"validatedPredictions":{"total":{"value":"1.00","rawValue":"1,00","confidence":0.9,"pages":[1],"automated":true,"isEdited":false}}}`,
			[]events.Field{{Name: "total", Value: "1.00", Confidence: ptrF(0.9), Page: ptrI(2)}, {Name: "extra", Value: "e"}, {Name: "items[0].desc", Value: "a"}}, ""},
		{"values only", `{"documentId":"d","values":{"b":2,"a":null}}`, []events.Field{{Name: "a", Value: ""}, {Name: "b", Value: "2"}}, ""},
		{"predictions only", `{"documentId":"d","predictions":[{"label":"x","value":"1"}]}`, []events.Field{{Name: "x", Value: "1"}}, ""},
		{"predictions ignored when values are there", `{"values":{},"predictions":[{"label":"x","value":"1"}]}`, []events.Field{}, ""},
		{"nothing to read", `{"documentId":"d"}`, []events.Field{}, ""},
		{"empty labels skipped", `{"values":{"":"x","a":"1"},"validatedPredictions":{"":{"value":"y"}}}`, []events.Field{{Name: "a", Value: "1"}}, ""},
		{"not an object", `["values"]`, nil, "not an object"},
		{"bad predictions", `{"predictions":[7]}`, nil, "output's predictions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cradl.NormalizeOutput(json.RawMessage(tc.body))
			checkFields(t, got, err, tc.want, tc.err)
		})
	}
}

func checkFields(t *testing.T, got []events.Field, err error, want []events.Field, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error = %v, want %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("error: %v", err)
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("fields\n got %s\nwant %s", gj, wj)
	}
}

func FuzzNormalizePredictions(f *testing.F) {
	f.Add([]byte(`[{"label":"total_amount","value":"24.99","rawValue":"24,99","confidence":0.93,"page":0,"location":[0.1,0.2,0.3,0.4],"source":"model"}]`))
	f.Add([]byte(`[{"label":"line_items","value":[[{"label":"description","value":"Pens","confidence":0.8,"page":0}],[{"label":"amount","value":3}]]}]`))
	f.Add([]byte(`{"total":{"value":"9.00","confidence":0.9,"page":1},"id":"A-1","items":[[{"label":"x","value":[[[[[[[[1]]]]]]]]}]]}`))
	f.Add([]byte(`[{"label":"z","value":null,"confidence":1e400,"page":-1}]`))
	f.Add([]byte(`[{"label":"","value":1}]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[1,2]`))
	nameRE := regexp.MustCompile(`^[^\[]+(\[\d+\](\.[^\[]+|\[\d+\])?)*`)
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := cradl.NormalizePredictions(body)
		if err != nil {
			if fields != nil {
				t.Fatalf("fields %v with error %v", fields, err)
			}
			return
		}
		var labels []string
		var list []map[string]json.RawMessage
		var obj map[string]json.RawMessage
		switch {
		case json.Unmarshal(body, &list) == nil:
			for _, p := range list {
				var l string
				if json.Unmarshal(p["label"], &l) != nil || l == "" {
					t.Fatalf("accepted a prediction without a label: %s", body)
				}
				labels = append(labels, l)
			}
		case json.Unmarshal(body, &obj) == nil:
			for k := range obj {
				labels = append(labels, k)
			}
		}
		for _, fd := range fields {
			// Every field comes from a top-level label.
			ok := false
			for _, l := range labels {
				ok = ok || fd.Name == l || strings.HasPrefix(fd.Name, l+"[")
			}
			if !ok || !nameRE.MatchString(fd.Name) {
				t.Fatalf("field %q is no label's (labels %q)", fd.Name, labels)
			}
			if fd.Page != nil && *fd.Page < 1 {
				t.Fatalf("page %d is not 1-based", *fd.Page)
			}
		}
		// The normalised output is serialisable as an event.
		if _, err := json.Marshal(fields); err != nil {
			t.Fatalf("fields do not marshal: %v", err)
		}
	})
}

func FuzzCallbackIDs(f *testing.F) {
	c, err := cradl.New(cradl.Config{ClientID: "i", ClientSecret: "s", Mode: "workflow", WorkflowID: "w"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"documentId":"las:document:1","values":{"a":"1"},"validatedPredictions":{},"predictions":[],"metadata":{"executionId":"las:workflow-execution:9","workflowId":"w"}}`))
	f.Add([]byte(`{"output":{"g":[{"f":{"value":"1"}}]},"context":{"runId":"cradl:run:1","documentId":"cradl:document:2"}}`))
	f.Add([]byte(`{"documentId":42}`))
	f.Add([]byte(`{"context":null}`))
	f.Add([]byte(`{"metadata":{"executionId":""},"documentId":"d"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, err := c.CallbackIDs(body)
		if err != nil {
			if ids != nil {
				t.Fatalf("ids %v with error %v", ids, err)
			}
			return
		}
		if len(ids) == 0 || len(ids) > 2 {
			t.Fatalf("%d ids from an accepted callback", len(ids))
		}
		// Every id is a non-empty string found where the two shapes keep ids.
		var top map[string]any
		if json.Unmarshal(body, &top) != nil {
			t.Fatalf("accepted what is not a JSON object: %q", body)
		}
		str := func(m any, k string) string {
			mm, _ := m.(map[string]any)
			s, _ := mm[k].(string)
			return s
		}
		where := []string{str(top, "documentId"), str(top["metadata"], "executionId"), str(top["context"], "runId"), str(top["context"], "documentId")}
		for _, id := range ids {
			found := false
			for _, w := range where {
				found = found || (id != "" && id == w)
			}
			if !found {
				t.Fatalf("id %q is not one of the callback's ids %q", id, where)
			}
		}
	})
}
