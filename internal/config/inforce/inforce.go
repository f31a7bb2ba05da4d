package inforce

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Code is the warning code findings are printed with.
const Code = "TRL0007"

// Status says how far the mesh enforces a field.
type Status int

const (
	// InForce fields act as Istio (or the API's own spec) documents.
	InForce Status = iota
	// Partly fields act in part; the entry's note says what is missing.
	Partly
	// NotInForce fields are accepted and have no effect yet; the note says
	// what happens instead.
	NotInForce
	// Platform fields describe how to run a pod (image, resources,
	// volumes, ...): Kubernetes' kubelet applies them, not the mesh. They
	// are not mesh config, so using them is not reported; docs/local.md
	// says what `trellis up` does with a pod.
	Platform
	// Inert fields carry no behaviour to enforce (status, bookkeeping
	// metadata); they are read and ignored, as `kubectl apply` ignores
	// them.
	Inert
)

func (s Status) String() string {
	switch s {
	case InForce:
		return "in force"
	case Partly:
		return "partly in force"
	case NotInForce:
		return "not in force"
	case Platform:
		return "Kubernetes only"
	}
	return "ignored"
}

// reported says whether using a field with this status is a finding.
func (s Status) reported() bool { return s == Partly || s == NotInForce }

// Kind names an accepted kind by API group and kind, as config.GroupKind
// does (this package sits below config and cannot import it).
type Kind struct {
	Group string // "" for the Kubernetes core group
	Kind  string
}

func (k Kind) String() string {
	if k.Group == "" || k == MeshConfig {
		return k.Kind
	}
	return k.Kind + "." + k.Group
}

// MeshConfig is Istio's MeshConfig, read from the `mesh` key of the
// ConfigMap `istio` in the root namespace; its paths are relative to that
// document.
var MeshConfig = Kind{Group: "meshconfig.istio.io", Kind: "MeshConfig"}

// Entry is one row of the table.
type Entry struct {
	Kind Kind
	// Path is the field's pattern; "" is the object as a whole.
	Path string
	// Value, when set, limits the entry to that value of the field (an
	// enum name such as STRICT, or a kind such as Service); the entry
	// without Value is the field's rule for every other value.
	Value string
	// Whole extends the entry to every field below Path that has no entry
	// of its own.
	Whole bool
	// Default, with Whole, makes the entry only the rule for the fields
	// below Path without rows of their own, not for Path itself: using
	// Path is reported only through those fields.
	Default bool
	Status  Status
	// Note says, for Partly, what is missing; for NotInForce, what happens
	// instead; for the others, anything a user should know.
	Note string
	// Security marks policies that must never look like protection when
	// they are not enforced: they are printed louder (see Finding.Security).
	Security bool
	// match, when set, decides whether the entry applies to a node's value
	// (used where Value alone cannot say it, e.g. an object's fields).
	match func(v any) bool
	// matchKey, when set, decides by a map entry's key (annotations).
	matchKey func(key string) bool
}

// applies says whether a conditional entry applies to the value v.
func (e *Entry) applies(v any, key string) bool {
	if e.matchKey != nil {
		return e.matchKey(key)
	}
	if e.match != nil {
		return e.match(v)
	}
	s, ok := v.(string)
	return ok && s == e.Value
}

func (e *Entry) conditional() bool { return e.Value != "" || e.match != nil || e.matchKey != nil }

// Finding is one field an object uses that is not (fully) in force.
type Finding struct {
	Path  string // concrete: spec.http[0].retries; "" for the whole object
	Entry *Entry
}

// Security reports whether the finding is about a security policy.
func (f Finding) Security() bool { return f.Entry.Security }

func (f Finding) String() string {
	if f.Path == "" {
		return f.Entry.Note
	}
	return f.Path + ": " + f.Entry.Note
}

// index holds the table by kind and pattern.
type index struct {
	byPattern map[string][]*Entry
	// maps holds the patterns whose object values are maps (their keys are
	// user data, not field names).
	maps map[string]bool
}

var indexes = func() map[Kind]*index {
	out := map[Kind]*index{}
	for i := range table {
		e := &table[i]
		ix := out[e.Kind]
		if ix == nil {
			ix = &index{byPattern: map[string][]*Entry{}, maps: map[string]bool{}}
			out[e.Kind] = ix
		}
		ix.byPattern[e.Path] = append(ix.byPattern[e.Path], e)
		// Every pattern step that ends in {} is a map.
		for p := e.Path; ; {
			j := strings.LastIndex(p, "{}")
			if j < 0 {
				break
			}
			ix.maps[p[:j]] = true
			p = p[:j]
		}
	}
	return out
}()

// Known reports whether the table has rows for kind.
func Known(k Kind) bool { return indexes[k] != nil }

// Entries returns the table's rows for kind, in table order.
func Entries(k Kind) []*Entry {
	var out []*Entry
	for i := range table {
		if table[i].Kind == k {
			out = append(out, &table[i])
		}
	}
	return out
}

// Kinds lists the kinds the table covers, in table order.
func Kinds() []Kind {
	var out []Kind
	for _, e := range table {
		if !slices.Contains(out, e.Kind) {
			out = append(out, e.Kind)
		}
	}
	return out
}

// Lookup returns the entry that decides pattern for value v: the pattern's
// own entry (a conditional one that applies to v first), else the nearest
// enclosing Whole entry. It returns nil when the table has neither.
func Lookup(k Kind, pattern string, v any) *Entry {
	ix := indexes[k]
	if ix == nil {
		return nil
	}
	if e := ix.own(pattern, v, ""); e != nil {
		return e
	}
	// The last step up is "", the object as a whole.
	for p := pattern; p != ""; {
		p = parentPattern(p)
		for _, e := range ix.byPattern[p] {
			if e.Whole && !e.conditional() {
				return e
			}
		}
	}
	return nil
}

// own is the entry written for pattern itself.
func (ix *index) own(pattern string, v any, key string) *Entry {
	var plain *Entry
	for _, e := range ix.byPattern[pattern] {
		if e.conditional() {
			if e.applies(v, key) {
				return e
			}
			continue
		}
		plain = e
	}
	return plain
}

// parentPattern strips the last step of a pattern: a field, [] or {}.
func parentPattern(p string) string {
	switch {
	case strings.HasSuffix(p, "[]"), strings.HasSuffix(p, "{}"):
		return p[:len(p)-2]
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Check returns the fields obj (a decoded JSON object: the whole document
// for Kubernetes, Gateway API and SMI kinds, including the Istio kinds'
// spec) uses that are not (fully) in force, in document order. prefix
// roots the concrete paths (MeshConfig's findings sit under
// `data[mesh]`).
func Check(k Kind, obj map[string]any, prefix string) []Finding {
	ix := indexes[k]
	if ix == nil {
		return nil
	}
	c := checker{k: k, ix: ix}
	var inherited *Entry
	if e := ix.own("", obj, ""); e != nil {
		if e.Status.reported() {
			c.out = append(c.out, Finding{Path: prefix, Entry: e})
		}
		inherited = e
	}
	c.object(obj, "", prefix, inherited, inherited != nil)
	return c.out
}

type checker struct {
	k   Kind
	ix  *index
	out []Finding
}

// object walks the fields (or, for a map, the entries) of one JSON object.
// inherited is the entry in force for the object itself; done says it was
// reported already (at the object or above).
func (c *checker) object(obj map[string]any, pattern, path string, inherited *Entry, done bool) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	isMap := c.ix.maps[pattern]
	for _, k := range keys {
		v := obj[k]
		if v == nil {
			continue
		}
		if pattern == "" && (k == "apiVersion" || k == "kind") {
			continue
		}
		var cp, cpath, key string
		if isMap {
			cp, cpath, key = pattern+"{}", path+"["+k+"]", k
		} else {
			cp, cpath = join(pattern, jsonName(k)), join(path, k)
		}
		c.node(v, cp, cpath, key, inherited, done)
	}
}

// node decides one value: its own row, else the enclosing Whole row. A
// row is reported once, where it starts to apply; a Default row starts to
// apply at the fields below its own path.
func (c *checker) node(v any, pattern, path, key string, inherited *Entry, done bool) {
	own := c.ix.own(pattern, v, key)
	e := own
	if e == nil && inherited != nil && inherited.Whole {
		e = inherited
	}
	switch {
	case e == nil:
		e = inherited
	case own != nil && own.Default:
		done = false // reported at the fields below, not here
	case e != inherited || !done:
		if e.Status.reported() {
			c.out = append(c.out, Finding{Path: path, Entry: e})
		}
		done = true
	}
	switch x := v.(type) {
	case map[string]any:
		c.object(x, pattern, path, e, done)
	case []any:
		for i, el := range x {
			if el != nil {
				c.node(el, pattern+"[]", path+"["+strconv.Itoa(i)+"]", "", e, done)
			}
		}
	}
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// jsonName maps a protobuf field name as users may write it (Istio's
// decoder takes snake_case too) to its JSON name.
func jsonName(k string) string {
	if !strings.Contains(k, "_") {
		return k
	}
	var b strings.Builder
	up := false
	for _, r := range k {
		if r == '_' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}
