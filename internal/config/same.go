package config

import (
	"reflect"

	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SameContent reports whether a and b are two definitions of one object
// (kind, namespace, name) that say the same thing: equal labels,
// annotations and decoded content. What only changes the spelling is
// ignored: formatting, key order, comments, `namespace: default` against
// no namespace, and the API version when both versions decode to the same
// content. `kubectl apply -f DIR` applies such copies one over the other
// with no change, so a folder holding the same ServiceAccount in two files
// (as many manifest folders do) is not a conflict.
//
// Server-set metadata (uid, resourceVersion, creationTimestamp, ...) is not
// compared either: nothing in the mesh reads it.
func SameContent(a, b *Object) bool {
	if a.Key() != b.Key() {
		return false
	}
	if !sameStrings(a.Labels, b.Labels) || !sameStrings(a.Annotations, b.Annotations) {
		return false
	}
	if pa, ok := a.Spec.(proto.Message); ok {
		pb, ok := b.Spec.(proto.Message)
		return ok && proto.Equal(pa, pb)
	}
	// Semantic equality treats nil and empty maps and slices alike and
	// compares Quantities by value ("1000m" is "1"), as the API server does.
	return equality.Semantic.DeepEqual(contentOnly(a.Spec), contentOnly(b.Spec))
}

func sameStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

var (
	typeMetaType   = reflect.TypeFor[metav1.TypeMeta]()
	objectMetaType = reflect.TypeFor[metav1.ObjectMeta]()
)

// contentOnly returns a shallow copy of a Go-typed object without its
// TypeMeta (the apiVersion as written) and ObjectMeta (compared through the
// Object's own fields, where the namespace is already defaulted).
func contentOnly(spec any) any {
	v := reflect.ValueOf(spec)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return spec
	}
	c := reflect.New(v.Elem().Type())
	c.Elem().Set(v.Elem())
	for _, t := range []reflect.Type{typeMetaType, objectMetaType} {
		if f := c.Elem().FieldByName(t.Name()); f.IsValid() && f.Type() == t && f.CanSet() {
			f.SetZero()
		}
	}
	return c.Interface()
}
