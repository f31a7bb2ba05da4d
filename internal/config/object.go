package config

import (
	"fmt"
	"strconv"

	"github.com/trellismesh/trellis/internal/config/inforce"
)

// Source locates one document: its file and its 1-based position in it.
type Source struct {
	File string
	Doc  int // 1-based; 0 when the whole file is meant
	Item int // 1-based index inside a `kind: List`; 0 otherwise
}

func (s Source) String() string {
	out := s.File
	if s.Doc > 0 {
		out += "#" + strconv.Itoa(s.Doc)
	}
	if s.Item > 0 {
		out += ".items[" + strconv.Itoa(s.Item-1) + "]"
	}
	return out
}

// GroupKind names a kind independent of its API version: v1alpha3, v1beta1
// and v1 VirtualServices are the same kind and decode to the same type.
type GroupKind struct {
	Group string // "" for the Kubernetes core group
	Kind  string
}

func (gk GroupKind) String() string {
	if gk.Group == "" {
		return gk.Kind
	}
	return gk.Kind + "." + gk.Group
}

// Key identifies an object in the config world.
type Key struct {
	GroupKind
	Namespace string // empty for cluster-scoped kinds
	Name      string
}

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

// Object is one decoded, validated config object.
type Object struct {
	Source     Source
	APIVersion string // as written by the user
	GroupKind
	Namespace   string // "default" when the user left it out, empty for cluster-scoped kinds
	Name        string
	Labels      map[string]string
	Annotations map[string]string
	// Spec is the typed content. For Istio kinds it is the spec message
	// (e.g. *v1alpha3.VirtualService, shared by every API version); for
	// Kubernetes, Gateway API and SMI kinds it is the whole typed object
	// (e.g. *corev1.Service, *gatewayv1.HTTPRoute, *split.TrafficSplit).
	Spec any
	// NotInForce lists the fields the object uses that the mesh does not
	// (fully) enforce, from the in-force table (package inforce).
	NotInForce []inforce.Finding
}

// Key returns the object's identity.
func (o *Object) Key() Key {
	return Key{GroupKind: o.GroupKind, Namespace: o.Namespace, Name: o.Name}
}

// ID names the object for messages: "VirtualService default/reviews".
func (o *Object) ID() string { return o.Key().String() }

// Error is a problem with one document or object, located by file, document,
// object and (inside Err, usually a *field.Error) field path.
type Error struct {
	Source Source
	Object string // "VirtualService default/reviews"; empty when the document could not be identified
	Err    error
}

func (e *Error) Error() string {
	if e.Object == "" {
		return fmt.Sprintf("%s: %v", e.Source, e.Err)
	}
	return fmt.Sprintf("%s %s: %v", e.Source, e.Object, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }
