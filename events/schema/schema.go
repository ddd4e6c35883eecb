// Package schema describes the events: JSON Schemas of every event's data, generated from the Go
// types in package events (so they cannot drift from what is published), the AsyncAPI 3.0
// document of the NATS subjects and the webhook deliveries, and a validator for the subset of JSON
// Schema the generator writes.
package schema

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Schema is a JSON Schema (draft 2020-12) in the subset this package writes and checks: type,
// properties, required, additionalProperties, items, enum, const, format.
type Schema struct {
	Type                 string             `json:"type,omitempty"`
	Description          string             `json:"description,omitempty"`
	Format               string             `json:"format,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	AdditionalProperties *Schema            `json:"additionalProperties,omitempty"`
	// Closed is additionalProperties: false (a struct: no keys but its own).
	Closed bool     `json:"-"`
	Items  *Schema  `json:"items,omitempty"`
	Enum   []string `json:"enum,omitempty"`
	Const  string   `json:"const,omitempty"`
}

// MarshalJSON writes additionalProperties false for closed objects.
func (s *Schema) MarshalJSON() ([]byte, error) {
	type plain Schema
	b, err := json.Marshal((*plain)(s))
	if err != nil || !s.Closed {
		return b, err
	}
	return append(b[:len(b)-1], []byte(`,"additionalProperties":false}`)...), nil
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

// For returns the schema of the JSON encoding/json writes for values of v's type: structs are
// closed objects whose fields without omitempty/omitzero are required.
func For(v any) *Schema { return of(reflect.TypeOf(v)) }

func of(t reflect.Type) *Schema {
	switch {
	case t == timeType:
		return &Schema{Type: "string", Format: "date-time"}
	case t == rawType:
		return &Schema{Description: "any JSON, verbatim"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return of(t.Elem())
	case reflect.String:
		return &Schema{Type: "string"}
	case reflect.Bool:
		return &Schema{Type: "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &Schema{Type: "integer"}
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: "number"}
	case reflect.Slice, reflect.Array:
		return &Schema{Type: "array", Items: of(t.Elem())}
	case reflect.Map:
		return &Schema{Type: "object", AdditionalProperties: of(t.Elem())}
	case reflect.Struct:
		s := &Schema{Type: "object", Properties: map[string]*Schema{}, Closed: true}
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			s.Properties[name] = of(f.Type)
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
				s.Required = append(s.Required, name)
			}
		}
		return s
	}
	panic(fmt.Sprintf("schema: no JSON Schema for Go type %s", t))
}

// Validate checks a decoded JSON value (from json.Unmarshal into any) against s and returns
// every violation, each with its path.
func (s *Schema) Validate(v any) []string {
	var out []string
	s.validate("$", v, &out)
	return out
}

func (s *Schema) validate(path string, v any, out *[]string) {
	bad := func(format string, args ...any) { *out = append(*out, path+": "+fmt.Sprintf(format, args...)) }
	switch s.Type {
	case "":
		return // any
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a string, got %T", v)
			return
		}
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not an RFC 3339 date-time", str)
			}
		}
		if s.Const != "" && str != s.Const {
			bad("want %q, got %q", s.Const, str)
		}
		if len(s.Enum) > 0 {
			found := false
			for _, e := range s.Enum {
				found = found || e == str
			}
			if !found {
				bad("%q is not one of %v", str, s.Enum)
			}
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T", v)
		}
	case "integer":
		n, ok := v.(float64)
		if !ok || n != float64(int64(n)) {
			bad("want an integer, got %v", v)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			bad("want a number, got %T", v)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return
		}
		for i, item := range a {
			s.Items.validate(fmt.Sprintf("%s[%d]", path, i), item, out)
		}
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				bad("%q is required", r)
			}
		}
		for k, val := range m {
			if p, ok := s.Properties[k]; ok {
				p.validate(path+"."+k, val, out)
			} else if s.AdditionalProperties != nil {
				s.AdditionalProperties.validate(path+"."+k, val, out)
			} else if s.Closed {
				bad("unknown property %q", k)
			}
		}
	}
}
