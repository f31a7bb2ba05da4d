package field

import (
	"fmt"
	"strconv"
	"strings"
)

// Path is an immutable location inside an object, such as spec.http[0].match.
// The zero value and nil both mean the object root.
type Path struct {
	parent *Path
	name   string // child name; empty for an index/key step
	index  string // "[3]" or "[user]"
}

// NewPath starts a path at a top-level field (usually "spec" or "metadata").
func NewPath(root string, more ...string) *Path {
	p := &Path{name: root}
	for _, m := range more {
		p = p.Child(m)
	}
	return p
}

// Child returns the path of a named field below p.
func (p *Path) Child(name string, more ...string) *Path {
	c := &Path{parent: p, name: name}
	for _, m := range more {
		c = c.Child(m)
	}
	return c
}

// Index returns the path of element i of the list at p.
func (p *Path) Index(i int) *Path { return &Path{parent: p, index: "[" + strconv.Itoa(i) + "]"} }

// Key returns the path of map entry k of the map at p.
func (p *Path) Key(k string) *Path { return &Path{parent: p, index: "[" + k + "]"} }

// String renders the path as dotted names with [index] steps.
func (p *Path) String() string {
	if p == nil {
		return ""
	}
	var parts []*Path
	for q := p; q != nil; q = q.parent {
		parts = append(parts, q)
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		q := parts[i]
		if q.index != "" {
			b.WriteString(q.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(q.name)
	}
	return b.String()
}

// Error is one problem at one field.
type Error struct {
	Path   string
	Detail string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Detail
	}
	return e.Path + ": " + e.Detail
}

// Errorf builds an Error at p.
func Errorf(p *Path, format string, args ...any) *Error {
	return &Error{Path: p.String(), Detail: fmt.Sprintf(format, args...)}
}

// Required reports a missing required field.
func Required(p *Path) *Error { return &Error{Path: p.String(), Detail: "required"} }

// List collects errors in the order they were found.
type List []*Error

// Add appends an error built like Errorf.
func (l *List) Add(p *Path, format string, args ...any) { *l = append(*l, Errorf(p, format, args...)) }

// Append appends errors, skipping nils.
func (l *List) Append(errs ...*Error) {
	for _, e := range errs {
		if e != nil {
			*l = append(*l, e)
		}
	}
}
