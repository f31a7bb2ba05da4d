package config

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/trellismesh/trellis/internal/config/field"
)

// The upstream types accept unknown fields silently (Istio's jsonpb
// unmarshalers set AllowUnknownFields, and encoding/json ignores them), so a
// misspelt `destinaton:` would vanish without a word. These walkers check a
// generic JSON value against the schema first and report every problem with
// its path.
//
// They also remove each value they report from v (a map entry is deleted, a
// list element is replaced by its type's zero value so that the indexes of
// the others stay), so that what is left always decodes: decodeObject then
// runs the per-kind validation on the rest and reports its errors with the
// schema's, as a compiler reports every error of a file in one pass.

// checkProto checks v (from decodeJSON) against a protobuf message schema,
// as Istio's JSON mapping reads it: field names in lowerCamel or
// snake_case, enums by name, durations as strings.
func checkProto(p *field.Path, v any, md protoreflect.MessageDescriptor, errs *field.List) {
	if v == nil {
		return
	}
	switch md.FullName() {
	case "google.protobuf.Duration":
		checkDuration(p, v, errs)
		return
	case "google.protobuf.Timestamp":
		if _, ok := v.(string); !ok {
			errs.Add(p, "must be an RFC 3339 timestamp string")
		}
		return
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any":
		return
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.Int64Value", "google.protobuf.UInt32Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		checkProtoScalar(p, v, md.Fields().ByName("value"), errs)
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		errs.Add(p, "must be an object, not %s", jsonTypeName(v))
		return
	}
	fields := md.Fields()
	setOneofs := map[protoreflect.FullName]string{}
	for _, k := range sortedKeys(obj) {
		n := len(*errs)
		checkProtoField(p, obj, k, md, fields, setOneofs, errs)
		if reportedAt(*errs, n, p.Child(k)) {
			delete(obj, k)
		}
	}
}

func checkProtoField(p *field.Path, obj map[string]any, k string, md protoreflect.MessageDescriptor, fields protoreflect.FieldDescriptors, setOneofs map[protoreflect.FullName]string, errs *field.List) {
	fd := fields.ByJSONName(k)
	if fd == nil {
		fd = fields.ByName(protoreflect.Name(k))
	}
	if fd == nil {
		errs.Append(unknownField(p.Child(k), k, protoFieldNames(md)))
		return
	}
	val := obj[k]
	if val == nil {
		return
	}
	if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
		if prev, dup := setOneofs[od.FullName()]; dup {
			errs.Add(p.Child(k), "only one of %s and %s may be set", prev, k)
		}
		setOneofs[od.FullName()] = k
	}
	cp := p.Child(k)
	switch {
	case fd.IsMap():
		m, ok := val.(map[string]any)
		if !ok {
			errs.Add(cp, "must be a map, not %s", jsonTypeName(val))
			return
		}
		for _, mk := range sortedKeys(m) {
			n := len(*errs)
			checkProtoValue(cp.Key(mk), m[mk], fd.MapValue(), errs)
			if reportedAt(*errs, n, cp.Key(mk)) {
				delete(m, mk)
			}
		}
	case fd.IsList():
		l, ok := val.([]any)
		if !ok {
			errs.Add(cp, "must be a list, not %s", jsonTypeName(val))
			return
		}
		for i, e := range l {
			n := len(*errs)
			checkProtoValue(cp.Index(i), e, fd, errs)
			if reportedAt(*errs, n, cp.Index(i)) {
				l[i] = protoZero(fd)
			}
		}
	default:
		checkProtoValue(cp, val, fd, errs)
	}
}

// reportedAt says whether an error was reported at exactly p since errs
// held n errors: the value at p is bad as a whole and must go.
func reportedAt(errs field.List, n int, p *field.Path) bool {
	s := p.String()
	for _, e := range errs[n:] {
		if e.Path == s {
			return true
		}
	}
	return false
}

// protoZero is the JSON of fd's zero value, standing in for a bad list
// element.
func protoZero(fd protoreflect.FieldDescriptor) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		md := fd.Message()
		switch md.FullName() {
		case "google.protobuf.Duration":
			return "0s"
		case "google.protobuf.Timestamp":
			return "1970-01-01T00:00:00Z"
		case "google.protobuf.ListValue":
			return []any{}
		case "google.protobuf.Value", "google.protobuf.Any":
			return nil
		case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
			"google.protobuf.Int32Value", "google.protobuf.Int64Value", "google.protobuf.UInt32Value",
			"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
			return protoZero(md.Fields().ByName("value"))
		}
		return map[string]any{}
	case protoreflect.StringKind, protoreflect.BytesKind:
		return ""
	case protoreflect.BoolKind:
		return false
	}
	return json.Number("0") // numbers, and enums by number: every proto3 enum has a 0
}

func checkProtoValue(p *field.Path, v any, fd protoreflect.FieldDescriptor, errs *field.List) {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		checkProto(p, v, fd.Message(), errs)
		return
	}
	checkProtoScalar(p, v, fd, errs)
}

func checkProtoScalar(p *field.Path, v any, fd protoreflect.FieldDescriptor, errs *field.List) {
	if v == nil {
		return
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			errs.Add(p, "must be a string, not %s", jsonTypeName(v))
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			errs.Add(p, "must be true or false, not %s", jsonTypeName(v))
		}
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			errs.Add(p, "must be a base64 string, not %s", jsonTypeName(v))
		} else if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			errs.Add(p, "must be base64: %v", err)
		}
	case protoreflect.EnumKind:
		checkEnum(p, v, fd.Enum(), errs)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if _, ok := v.(json.Number); !ok {
			errs.Add(p, "must be a number, not %s", jsonTypeName(v))
		}
	default: // integer kinds
		checkInt(p, v, fd.Kind(), errs)
	}
}

func checkInt(p *field.Path, v any, k protoreflect.Kind, errs *field.List) {
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string: // protobuf's JSON mapping allows quoted 64-bit integers
		s = x
	default:
		errs.Add(p, "must be an integer, not %s", jsonTypeName(v))
		return
	}
	var lo, hi float64
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		lo, hi = math.MinInt32, math.MaxInt32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		lo, hi = 0, math.MaxUint32
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		lo, hi = 0, math.MaxUint64
	default:
		lo, hi = math.MinInt64, math.MaxInt64
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) {
		errs.Add(p, "must be an integer, not %q", s)
		return
	}
	if f < lo {
		if lo == 0 {
			errs.Add(p, "must be >= 0")
		} else {
			errs.Add(p, "must be >= %.0f", lo)
		}
		return
	}
	if f > hi {
		errs.Add(p, "must be <= %.0f", hi)
	}
}

func checkEnum(p *field.Path, v any, ed protoreflect.EnumDescriptor, errs *field.List) {
	vals := ed.Values()
	switch x := v.(type) {
	case string:
		if vals.ByName(protoreflect.Name(x)) != nil {
			return
		}
	case json.Number:
		if n, err := x.Int64(); err == nil && vals.ByNumber(protoreflect.EnumNumber(n)) != nil {
			return
		}
	}
	names := make([]string, 0, vals.Len())
	for i := 0; i < vals.Len(); i++ {
		names = append(names, string(vals.Get(i).Name()))
	}
	errs.Add(p, "unknown value %s: must be one of %s", jsonValueString(v), strings.Join(names, ", "))
}

// checkDuration accepts what Istio accepts: Go durations ("500ms", "1m30s")
// and protobuf's seconds form ("0.5s"); never negative.
func checkDuration(p *field.Path, v any, errs *field.List) {
	s, ok := v.(string)
	if !ok {
		errs.Add(p, "must be a duration string such as \"500ms\" or \"2s\", not %s", jsonTypeName(v))
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		errs.Add(p, "invalid duration %q: use a number with a unit, such as \"500ms\" or \"2s\"", s)
		return
	}
	if d < 0 {
		errs.Add(p, "duration %q must not be negative", s)
	}
}

func protoFieldNames(md protoreflect.MessageDescriptor) []string {
	fs := md.Fields()
	out := make([]string, 0, fs.Len())
	for i := 0; i < fs.Len(); i++ {
		out = append(out, fs.Get(i).JSONName())
	}
	return out
}

// checkStruct checks v against a Go type's encoding/json shape (json tags,
// inline structs, maps, slices). Types with their own UnmarshalJSON
// (Quantity, IntOrString, Time) are leaves: decoding checks them.
func checkStruct(p *field.Path, v any, t reflect.Type, errs *field.List) {
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		// Quantity, IntOrString, Time and friends parse themselves; try it
		// here so that a bad value is reported at its path rather than as
		// a pathless "cannot decode" later.
		checkUnmarshal(p, v, t, errs)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			errs.Add(p, "must be an object, not %s", jsonTypeName(v))
			return
		}
		checkFields(p, obj, structFields(t), nil, nil, errs)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			errs.Add(p, "must be a map, not %s", jsonTypeName(v))
			return
		}
		for _, k := range sortedKeys(m) {
			n := len(*errs)
			checkStruct(p.Key(k), m[k], t.Elem(), errs)
			if reportedAt(*errs, n, p.Key(k)) {
				delete(m, k)
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			if _, ok := v.(string); !ok {
				errs.Add(p, "must be a base64 string, not %s", jsonTypeName(v))
			}
			return
		}
		l, ok := v.([]any)
		if !ok {
			errs.Add(p, "must be a list, not %s", jsonTypeName(v))
			return
		}
		for i, e := range l {
			n := len(*errs)
			checkStruct(p.Index(i), e, t.Elem(), errs)
			if reportedAt(*errs, n, p.Index(i)) {
				l[i] = goZero(t.Elem())
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			errs.Add(p, "must be a string, not %s", jsonTypeName(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			errs.Add(p, "must be true or false, not %s", jsonTypeName(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			errs.Add(p, "must be an integer, not %s", jsonTypeName(v))
			return
		}
		if _, err := n.Int64(); err != nil {
			errs.Add(p, "must be an integer, not %s", n)
		}
	case reflect.Float32, reflect.Float64:
		if _, ok := v.(json.Number); !ok {
			errs.Add(p, "must be a number, not %s", jsonTypeName(v))
		}
	}
}

// checkFields checks the fields of obj (a path p of JSON object) against
// a struct's fields, skipping the names in skip, and removes each field
// reported bad. Unknown fields are suggested among suggest when given,
// else among fields.
func checkFields(p *field.Path, obj map[string]any, fields map[string]reflect.Type, skip map[string]bool, suggest []string, errs *field.List) {
	for _, k := range sortedKeys(obj) {
		if skip[k] {
			continue
		}
		n := len(*errs)
		cp := field.NewPath(k)
		if p != nil {
			cp = p.Child(k)
		}
		if ft, ok := fields[k]; ok {
			checkStruct(cp, obj[k], ft, errs)
		} else {
			names := suggest
			if names == nil {
				names = make([]string, 0, len(fields))
				for n := range fields {
					names = append(names, n)
				}
			}
			errs.Append(unknownField(cp, k, names))
		}
		if reportedAt(*errs, n, cp) {
			delete(obj, k)
		}
	}
}

// goZero is the JSON of t's zero value, standing in for a bad list element.
// A pointer element gets its pointee's zero, not null: validators range over
// []*T without expecting nil elements.
func goZero(t reflect.Type) any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	b, err := json.Marshal(reflect.Zero(t).Interface())
	if err != nil {
		return nil
	}
	v, err := decodeJSON(b)
	if err != nil {
		return nil
	}
	return v
}

var jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()

func checkUnmarshal(p *field.Path, v any, t reflect.Type, errs *field.List) {
	b, err := json.Marshal(v)
	if err != nil {
		errs.Add(p, "invalid value: %v", err)
		return
	}
	if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(b); err != nil {
		errs.Add(p, "invalid value %s: %v", jsonValueString(v), strings.TrimPrefix(err.Error(), "json: "))
	}
}

// structFields maps the JSON names encoding/json would accept to field types.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			continue
		}
		inline := strings.Contains(opts, "inline") || (f.Anonymous && name == "")
		if inline {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range structFields(ft) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func unknownField(p *field.Path, name string, known []string) *field.Error {
	if s := closest(name, known); s != "" {
		return field.Errorf(p, "unknown field (did you mean %q?)", s)
	}
	return field.Errorf(p, "unknown field")
}

// closest returns the known name within edit distance 2 of name, if any.
func closest(name string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func jsonTypeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func jsonValueString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
