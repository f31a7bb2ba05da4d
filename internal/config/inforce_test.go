package config

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/trellismesh/trellis/internal/config/inforce"
)

// schemaPaths lists every field of an accepted kind as an in-force table
// pattern, from the same schemas the strict decoder checks against: the
// protobuf descriptors of the Istio kinds (plus their metadata), the Go
// types of the others (every served version), and MeshConfig.
func schemaPaths(t *testing.T) map[inforce.Kind][]string {
	t.Helper()
	out := map[inforce.Kind][]string{}
	for gk, info := range kinds {
		k := inforce.Kind{Group: gk.Group, Kind: gk.Kind}
		var paths []string
		if info.spec != nil {
			protoPaths("spec", info.spec.ProtoReflect().Descriptor(), 0, &paths)
			goPaths("metadata", metaType, 0, &paths)
			paths = append(paths, "status") // read and ignored, as kubectl does
		} else {
			for _, v := range info.versions {
				goPaths("", info.goType(v), 0, &paths)
			}
		}
		out[k] = dedupe(paths)
	}
	var mesh []string
	protoPaths("", (&meshv1alpha1.MeshConfig{}).ProtoReflect().Descriptor(), 0, &mesh)
	out[inforce.MeshConfig] = dedupe(mesh)
	return out
}

func dedupe(paths []string) []string {
	sort.Strings(paths)
	out := paths[:0]
	for i, p := range paths {
		if i == 0 || p != paths[i-1] {
			out = append(out, p)
		}
	}
	return out
}

// wellKnownLeaf are the protobuf messages the decoder reads as one value.
var wellKnownLeaf = map[protoreflect.FullName]bool{
	"google.protobuf.Duration": true, "google.protobuf.Timestamp": true, "google.protobuf.Struct": true,
	"google.protobuf.Value": true, "google.protobuf.ListValue": true, "google.protobuf.Any": true,
	"google.protobuf.BoolValue": true, "google.protobuf.StringValue": true, "google.protobuf.BytesValue": true,
	"google.protobuf.Int32Value": true, "google.protobuf.Int64Value": true, "google.protobuf.UInt32Value": true,
	"google.protobuf.UInt64Value": true, "google.protobuf.FloatValue": true, "google.protobuf.DoubleValue": true,
}

func protoPaths(prefix string, md protoreflect.MessageDescriptor, depth int, out *[]string) {
	if wellKnownLeaf[md.FullName()] || depth > 16 || md.Fields().Len() == 0 { // an empty message ({}) is one value
		*out = append(*out, prefix)
		return
	}
	fs := md.Fields()
	for i := range fs.Len() {
		fd := fs.Get(i)
		p := joinPath(prefix, fd.JSONName())
		switch {
		case fd.IsMap():
			p += "{}"
			if fd.MapValue().Kind() == protoreflect.MessageKind {
				protoPaths(p, fd.MapValue().Message(), depth+1, out)
				continue
			}
		case fd.IsList():
			p += "[]"
		}
		if !fd.IsMap() && fd.Kind() == protoreflect.MessageKind {
			protoPaths(p, fd.Message(), depth+1, out)
			continue
		}
		*out = append(*out, p)
	}
}

func goPaths(prefix string, t reflect.Type, depth int, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > 20 || reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		*out = append(*out, prefix)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		for name, ft := range structFields(t) {
			if prefix == "" && (name == "apiVersion" || name == "kind") {
				continue
			}
			goPaths(joinPath(prefix, name), ft, depth+1, out)
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			*out = append(*out, prefix)
			return
		}
		goPaths(prefix+"[]", t.Elem(), depth+1, out)
	case reflect.Map:
		goPaths(prefix+"{}", t.Elem(), depth+1, out)
	default:
		*out = append(*out, prefix)
	}
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// TestInForceTableCoversEveryField is the guard: every field of every
// accepted kind is in the in-force table (its own row, or a row for a
// whole subtree above it), so no field or kind is ever accepted without
// saying whether it works.
func TestInForceTableCoversEveryField(t *testing.T) {
	for k, paths := range schemaPaths(t) {
		if !inforce.Known(k) {
			t.Errorf("%s is accepted but has no rows in the in-force table (internal/config/inforce/table.go)", k)
			continue
		}
		for _, p := range paths {
			if inforce.Lookup(k, p, nil) == nil {
				t.Errorf("%s %s: accepted but not in the in-force table: add a row saying whether it is in force (internal/config/inforce/table.go)", k, p)
			}
		}
	}
}

// TestInForceTableHasNoStaleRows keeps the table honest the other way: a
// row for a field no schema has (a typo, a renamed field) would document
// something that does not exist.
func TestInForceTableHasNoStaleRows(t *testing.T) {
	all := schemaPaths(t)
	for _, k := range inforce.Kinds() {
		paths, ok := all[k]
		if !ok {
			t.Errorf("the in-force table has rows for %s, which Trellis does not accept", k)
			continue
		}
		for _, e := range inforce.Entries(k) {
			if e.Path == "" || hasNode(paths, e.Path) {
				continue
			}
			t.Errorf("%s %s: the in-force table names a field the schema does not have", k, e.Path)
		}
	}
}

// hasNode reports whether pattern is a field or an ancestor of one.
func hasNode(paths []string, pattern string) bool {
	for _, p := range paths {
		if p == pattern || strings.HasPrefix(p, pattern+".") || strings.HasPrefix(p, pattern+"[]") || strings.HasPrefix(p, pattern+"{}") {
			return true
		}
	}
	return false
}
