package cradl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/ingest-dev/ingest/events"
)

// maxNesting bounds how deep line items are flattened; deeper values are kept as JSON text.
const maxNesting = 6

// NormalizePredictions turns Cradl's predictions into fields. It reads the v1 list
// [{label, value|null, rawValue, confidence, page, location, source}] in Cradl's order, and the
// v2 object {label: {value, confidence, page} | value} in label order. Values become text
// (numbers as Cradl wrote them, null as ""); line items value: [[{label, value, …}], …] become
// one field per cell named label[row].cellLabel (rows from 0). Pages are Cradl's 0-based page
// plus one. null or an empty body is no predictions.
func NormalizePredictions(raw json.RawMessage) ([]events.Field, error) {
	if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return []events.Field{}, nil
	}
	v, err := decode(raw)
	if err != nil {
		return nil, fmt.Errorf("the predictions are not JSON: %w", err)
	}
	return predictionsOf(v)
}

func predictionsOf(v any) ([]events.Field, error) {
	out := []events.Field{}
	switch x := v.(type) {
	case []any:
		for i, item := range x {
			obj, ok := item.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("prediction %d is not an object", i)
			}
			label, ok := obj["label"].(string)
			if !ok || label == "" {
				return nil, fmt.Errorf("prediction %d has no label", i)
			}
			addPrediction(&out, label, obj, 0)
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			if k == "" {
				return nil, errors.New("a prediction has an empty label")
			}
			addLabeled(&out, k, x[k], 0)
		}
	case nil:
	default:
		return nil, errors.New("the predictions are neither a list nor an object")
	}
	return out, nil
}

// NormalizeOutput turns a workflow execution's output ({documentId, values,
// validatedPredictions, predictions}) into fields: validatedPredictions first (they carry
// confidence and pages), then values of labels they lack, both in label order. Only when
// neither is there are the raw predictions read.
func NormalizeOutput(raw json.RawMessage) ([]events.Field, error) {
	v, err := decode(raw)
	if err != nil {
		return nil, fmt.Errorf("the execution output is not JSON: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the execution output is not an object")
	}
	out := []events.Field{}
	seen := map[string]bool{}
	vp, vpOK := m["validatedPredictions"].(map[string]any)
	// An empty label names nothing; it is left in Raw.
	for _, k := range sortedKeys(vp) {
		if k == "" {
			continue
		}
		addLabeled(&out, k, vp[k], 0)
		seen[k] = true
	}
	values, valuesOK := m["values"].(map[string]any)
	for _, k := range sortedKeys(values) {
		if k != "" && !seen[k] {
			addLabeled(&out, k, values[k], 0)
		}
	}
	if vpOK || valuesOK {
		return out, nil
	}
	if p, ok := m["predictions"]; ok {
		fs, err := predictionsOf(p)
		if err != nil {
			return nil, fmt.Errorf("the output's predictions: %w", err)
		}
		return fs, nil
	}
	return out, nil
}

// decode reads one JSON value, numbers kept as written.
func decode(raw []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// addLabeled adds a labelled member: a prediction object (it has a value) or a bare value.
func addLabeled(out *[]events.Field, name string, v any, depth int) {
	if m, ok := v.(map[string]any); ok {
		if _, has := m["value"]; has {
			addPrediction(out, name, m, depth)
			return
		}
	}
	addValue(out, name, v, nil, nil, depth)
}

// addPrediction adds a prediction object {value, confidence, page|pages}.
func addPrediction(out *[]events.Field, name string, obj map[string]any, depth int) {
	addValue(out, name, obj["value"], confidence(obj["confidence"]), page(obj), depth)
}

// addValue adds the field(s) of one value: line items are flattened row by row, anything else
// is one field.
func addValue(out *[]events.Field, name string, v any, conf *float64, pg *int, depth int) {
	rows, ok := v.([]any)
	if !ok || depth >= maxNesting {
		*out = append(*out, events.Field{Name: name, Value: text(v), Confidence: conf, Page: pg})
		return
	}
	for r, row := range rows {
		rowName := fmt.Sprintf("%s[%d]", name, r)
		switch x := row.(type) {
		case []any: // v1: a row is a list of cells {label, value, …}
			for i, cell := range x {
				if cm, ok := cell.(map[string]any); ok {
					if l, ok := cm["label"].(string); ok && l != "" {
						addPrediction(out, rowName+"."+l, cm, depth+1)
						continue
					}
				}
				addValue(out, fmt.Sprintf("%s[%d]", rowName, i), cell, nil, nil, depth+1)
			}
		case map[string]any:
			if l, ok := x["label"].(string); ok && l != "" {
				if _, has := x["value"]; has { // a lone cell
					addPrediction(out, rowName+"."+l, x, depth+1)
					continue
				}
			}
			for _, k := range sortedKeys(x) { // a row object {column: value}
				addLabeled(out, rowName+"."+k, x[k], depth+1)
			}
		default:
			addValue(out, rowName, row, nil, nil, depth+1)
		}
	}
}

// text is a value as text: strings as they are, numbers as Cradl wrote them, null as "",
// objects and lists as compact JSON.
func text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		return strconv.FormatBool(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func confidence(v any) *float64 {
	n, ok := v.(json.Number)
	if !ok {
		return nil
	}
	f, err := n.Float64()
	if err != nil {
		return nil
	}
	return &f
}

// page is a prediction's page ("page", or the first of "pages"), 1-based.
func page(obj map[string]any) *int {
	v := obj["page"]
	if v == nil {
		if ps, ok := obj["pages"].([]any); ok && len(ps) > 0 {
			v = ps[0]
		}
	}
	n, ok := v.(json.Number)
	if !ok {
		return nil
	}
	p, err := strconv.ParseInt(n.String(), 10, 32)
	if err != nil || p < 0 || p > 1_000_000 {
		return nil
	}
	q := int(p) + 1
	return &q
}
