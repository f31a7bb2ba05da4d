package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/trellismesh/trellis/internal/config/field"
	"github.com/trellismesh/trellis/internal/config/validate"
	"github.com/trellismesh/trellis/internal/config/validate/kubeapi"
)

// DefaultNamespace is used when an object names none, as kubectl does.
const DefaultNamespace = "default"

// DefaultRootNamespace is Istio's default mesh root namespace.
const DefaultRootNamespace = "istio-system"

// File is what one file yielded: its valid objects, its errors and its
// warnings. Errors and warnings are *Error values.
type File struct {
	Path     string
	Objects  []*Object
	Errors   []error
	Warnings []error
}

// ParseFile decodes and validates every document in data. It never stops at
// the first problem: every document is tried and every error reported.
// Documents that fail are left out of Objects.
func ParseFile(path string, data []byte) *File {
	f := &File{Path: path}
	docs, err := splitDocuments(path, data)
	for i, d := range docs {
		f.parseDocument(Source{File: path, Doc: i + 1}, d)
	}
	if err != nil {
		// The documents before a syntax error are still checked, so one
		// run shows every problem; the broken one is the next document.
		f.Errors = append(f.Errors, &Error{Source: Source{File: path, Doc: len(docs) + 1}, Err: err})
	}
	return f
}

// jsonErrorOffset is the byte offset a JSON decoding error points at.
func jsonErrorOffset(err error, dec *json.Decoder) int64 {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return syn.Offset
	}
	return dec.InputOffset()
}

// lineAt is the 1-based line holding byte offset off of data.
func lineAt(data []byte, off int64) int {
	off = max(0, min(off, int64(len(data))))
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// document is one document of a file and the file line it starts on, so
// that parser errors can point at lines the user's editor shows.
type document struct {
	data []byte
	line int // 1-based
}

// splitDocuments returns each document as JSON. YAML streams split on
// `---` lines; .json files may hold one object or a stream of them.
func splitDocuments(path string, data []byte) ([]document, error) {
	if strings.HasSuffix(strings.ToLower(path), ".json") {
		dec := json.NewDecoder(bytes.NewReader(data))
		var out []document
		for {
			var raw json.RawMessage
			start := dec.InputOffset()
			if err := dec.Decode(&raw); err == io.EOF {
				return out, nil
			} else if err != nil {
				return out, fmt.Errorf("invalid JSON at line %d: %w", lineAt(data, jsonErrorOffset(err, dec)), err)
			}
			rest := data[start:]
			start += int64(len(rest) - len(bytes.TrimLeft(rest, " \t\r\n")))
			out = append(out, document{data: raw, line: lineAt(data, start)})
		}
	}
	return splitYAML(data), nil
}

// splitYAML splits a YAML stream at document separators, keeping empty
// documents so that document numbers match what the user counts.
func splitYAML(data []byte) []document {
	var docs []document
	var cur bytes.Buffer
	curLine := 1
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		trimmed := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- ")) {
			docs = append(docs, document{data: bytes.Clone(cur.Bytes()), line: curLine})
			cur.Reset()
			curLine = i + 2
			// YAML lets a document start on its separator line
			// ("--- {apiVersion: v1, ...}"); keep that content rather
			// than silently dropping it.
			if rest := bytes.TrimSpace(trimmed[3:]); len(rest) > 0 && rest[0] != '#' {
				cur.Write(rest)
				cur.WriteByte('\n')
				curLine = i + 1
			}
			continue
		}
		cur.Write(line)
	}
	docs = append(docs, document{data: cur.Bytes(), line: curLine})
	// A leading separator does not start a document the user counts.
	if len(docs) > 1 && isBlankYAML(docs[0].data) {
		docs = docs[1:]
	}
	return docs
}

var yamlLine = regexp.MustCompile(`\bline (\d+)`)

// fileLines rewrites the document-relative "line N" in a YAML parser error
// into a line of the file.
func fileLines(err error, docLine int) error {
	if docLine <= 1 {
		return err
	}
	msg := yamlLine.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, convErr := strconv.Atoi(m[len("line "):])
		if convErr != nil {
			return m
		}
		return "line " + strconv.Itoa(n+docLine-1)
	})
	return errors.New(msg)
}

func isBlankYAML(b []byte) bool {
	for _, line := range bytes.Split(b, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

// decodeJSON reads a JSON value keeping numbers exact.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

func (f *File) parseDocument(src Source, doc document) {
	if isBlankYAML(doc.data) {
		return
	}
	js, err := yaml.YAMLToJSONStrict(doc.data)
	if err != nil {
		f.Errors = append(f.Errors, &Error{Source: src, Err: fmt.Errorf("invalid YAML: %w", fileLines(err, doc.line))})
		return
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return
	}
	v, err := decodeJSON(js)
	if err != nil {
		f.Errors = append(f.Errors, &Error{Source: src, Err: fmt.Errorf("invalid document: %w", err)})
		return
	}
	f.parseValue(src, v)
}

func (f *File) parseValue(src Source, v any) {
	obj, ok := v.(map[string]any)
	if !ok {
		f.Errors = append(f.Errors, &Error{Source: src, Err: fmt.Errorf("a document must be an object with apiVersion and kind, not %s", jsonTypeName(v))})
		return
	}
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if apiVersion == "" || kind == "" {
		f.Errors = append(f.Errors, &Error{Source: src, Err: errors.New("apiVersion and kind are required")})
		return
	}
	if kind == "List" && (apiVersion == "v1" || apiVersion == "List") {
		items, ok := obj["items"].([]any)
		if !ok && obj["items"] != nil {
			f.Errors = append(f.Errors, &Error{Source: src, Object: "List", Err: field.Errorf(field.NewPath("items"), "must be a list of objects, not %s", jsonTypeName(obj["items"]))})
			return
		}
		for i, it := range items {
			f.parseValue(Source{File: src.File, Doc: src.Doc, Item: i + 1}, it)
		}
		return
	}
	o, errs, warn := decodeObject(src, obj)
	if warn != nil {
		f.Warnings = append(f.Warnings, warn)
		return
	}
	if len(errs) > 0 {
		f.Errors = append(f.Errors, errs...)
		return
	}
	f.Objects = append(f.Objects, o)
	f.Warnings = append(f.Warnings, checkInForce(src, o, obj)...)
}

// decodeObject checks, decodes and validates one object. It returns either
// the object, its errors, or (for a known unsupported kind) a warning.
func decodeObject(src Source, obj map[string]any) (*Object, []error, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kindName, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)

	info, version, err := lookupKind(apiVersion, kindName)
	id := kindName + " " + name
	if ns != "" || info == nil || info.namespaced {
		id = kindName + " " + orDefault(ns) + "/" + name
	}
	fail := func(err error) (*Object, []error, error) {
		return nil, []error{&Error{Source: src, Object: id, Err: err}}, nil
	}
	if err != nil {
		var u *unsupportedError
		if errors.As(err, &u) {
			return nil, nil, &Error{Source: src, Object: id, Err: err}
		}
		return fail(err)
	}
	if !info.namespaced {
		id = kindName + " " + name
	}

	var errs field.List
	checkStruct(field.NewPath("metadata"), obj["metadata"], metaType, &errs)
	if name == "" {
		if _, hasGen := meta["generateName"]; hasGen {
			errs.Add(field.NewPath("metadata", "generateName"), "not supported: set metadata.name")
		} else {
			errs.Append(field.Required(field.NewPath("metadata", "name")))
		}
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs.Add(field.NewPath("metadata", "name"), "%q is not a valid name: %s", name, msg)
		}
	}
	if ns != "" {
		if !info.namespaced {
			errs.Add(field.NewPath("metadata", "namespace"), "%s is cluster-scoped and takes no namespace", kindName)
		}
		for _, msg := range validation.IsDNS1123Label(ns) {
			errs.Add(field.NewPath("metadata", "namespace"), "%q is not a valid namespace: %s", ns, msg)
		}
	}

	// The schema walk removes every value it reports from obj, so that
	// the rest still decodes and validates: all of an object's errors come
	// in one pass, and the object stays rejected.
	var specJSON []byte
	if info.spec != nil {
		for _, k := range sortedKeys(obj) {
			switch k {
			case "apiVersion", "kind", "metadata", "spec", "status":
			default:
				errs.Append(unknownField(field.NewPath(k), k, []string{"spec", "metadata"}))
				delete(obj, k)
			}
		}
		n := len(errs)
		checkProto(field.NewPath("spec"), obj["spec"], info.spec.ProtoReflect().Descriptor(), &errs)
		if reportedAt(errs, n, field.NewPath("spec")) {
			delete(obj, "spec")
		}
		if s, ok := obj["spec"]; ok && s != nil {
			specJSON, _ = json.Marshal(s)
		}
	} else {
		checkRoot(obj, info.goType(version), &errs)
	}
	docJSON, _ := json.Marshal(obj)
	value, err := info.decode(version, docJSON, specJSON)
	if err != nil {
		if len(errs) > 0 {
			// What is left after the schema errors still does not
			// decode: those errors are the ones to fix first.
			return nil, fieldErrors(src, id, errs), nil
		}
		return fail(fmt.Errorf("cannot decode: %w", err))
	}
	o := &Object{
		Source:      src,
		APIVersion:  apiVersion,
		GroupKind:   info.gk,
		Name:        name,
		Labels:      stringMap(meta["labels"]),
		Annotations: stringMap(meta["annotations"]),
		Spec:        value,
	}
	if info.namespaced {
		o.Namespace = orDefault(ns)
	}
	m := validate.Meta{Namespace: o.Namespace, Name: o.Name, Labels: o.Labels, Annotations: o.Annotations, RootNamespace: DefaultRootNamespace}
	verrs := info.validate(m, value)
	if len(errs) > 0 {
		var nameReported []string
		if name == "" {
			nameReported = []string{"metadata.name"} // as required, or as generateName
		}
		errs = append(errs, notCovered(verrs, errs, nameReported...)...)
		// In the order of the object, as a compiler lists errors by line.
		sort.SliceStable(errs, func(i, j int) bool { return field.Less(errs[i].Path, errs[j].Path) })
		return nil, fieldErrors(src, id, errs), nil
	}
	if len(verrs) > 0 {
		return nil, fieldErrors(src, id, verrs), nil
	}
	return o, nil, nil
}

// checkRoot checks the top-level fields of a Go-typed object but metadata
// (checked on its own), apiVersion and kind (already looked up).
func checkRoot(obj map[string]any, t reflect.Type, errs *field.List) {
	skip := map[string]bool{"metadata": true, "apiVersion": true, "kind": true}
	checkFields(nil, obj, structFields(t), skip, []string{"spec", "data", "status"}, errs)
}

// didYouMean reads the field an unknown-field error suggests.
var didYouMean = regexp.MustCompile(`^unknown field \(did you mean "([^"]+)"\?\)$`)

// notCovered drops the validation errors that only echo a schema error.
// A value the schema walk reported was removed before validation, which may
// then call it "required", find its parent empty ("needs route, redirect,
// ...") or its list's weights all zero. So these go:
//   - errors at or under a reported path (or under extra);
//   - errors at or under the field a misspelt name was meant to be
//     ("destinaton" → "destination: required");
//   - errors exactly at a reported path's ancestors, up to the nearest
//     enclosing list or map (spec.http[0], spec.http), but never at a
//     top-level field such as spec; errors deeper in those ancestors'
//     other fields stay, so two mistakes in one route are both reported.
func notCovered(verrs, schema field.List, extra ...string) field.List {
	subtrees := append([]string(nil), extra...)
	exact := map[string]bool{}
	for _, e := range schema {
		subtrees = append(subtrees, e.Path)
		if m := didYouMean.FindStringSubmatch(e.Detail); m != nil {
			if parent, viaIndex := parentPath(e.Path); !viaIndex && parent != "" {
				subtrees = append(subtrees, parent+"."+m[1])
			} else if parent == "" {
				subtrees = append(subtrees, m[1])
			}
		}
		for p := e.Path; ; {
			parent, viaIndex := parentPath(p)
			if !strings.ContainsAny(parent, ".[") {
				break // a top-level field, or the root
			}
			exact[parent] = true
			if viaIndex {
				break
			}
			p = parent
		}
	}
	var out field.List
	for _, e := range verrs {
		if !exact[e.Path] && !under(e.Path, subtrees) {
			out = append(out, e)
		}
	}
	return out
}

// parentPath splits a rendered field path ("spec.http[0].timeout") at its
// last step: the parent, and whether that step was a list index or map key.
func parentPath(p string) (parent string, viaIndex bool) {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i], true
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i], false
	}
	return "", false
}

// under says whether path is one of roots or inside one of them.
func under(path string, roots []string) bool {
	for _, r := range roots {
		if path == r || (strings.HasPrefix(path, r) && (path[len(r)] == '.' || path[len(r)] == '[')) {
			return true
		}
	}
	return false
}

func fieldErrors(src Source, id string, errs field.List) []error {
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		out = append(out, &Error{Source: src, Object: id, Err: e})
	}
	return out
}

func orDefault(ns string) string {
	if ns == "" {
		return DefaultNamespace
	}
	return ns
}

func stringMap(v any) map[string]string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, x := range m {
		s, _ := x.(string)
		out[k] = s
	}
	return out
}

// MeshConfigMapName and MeshConfigKey locate MeshConfig, as in Istio: the
// ConfigMap `istio` in the root namespace, key `mesh`.
const (
	MeshConfigMapName = "istio"
	MeshConfigKey     = "mesh"
)

// ParseMeshConfig strictly decodes MeshConfig YAML (the ConfigMap's `mesh`
// key) on top of Istio's defaults that Trellis uses.
func ParseMeshConfig(p *field.Path, data string) (*meshv1alpha1.MeshConfig, field.List) {
	mc := DefaultMeshConfig()
	if strings.TrimSpace(data) == "" {
		return mc, nil
	}
	js, err := yaml.YAMLToJSONStrict([]byte(data))
	if err != nil {
		return nil, field.List{field.Errorf(p, "invalid YAML: %v", err)}
	}
	v, err := decodeJSON(js)
	if err != nil {
		return nil, field.List{field.Errorf(p, "invalid YAML: %v", err)}
	}
	var errs field.List
	checkProto(p, v, mc.ProtoReflect().Descriptor(), &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	if err := mc.UnmarshalJSON(js); err != nil {
		return nil, field.List{field.Errorf(p, "cannot decode: %v", err)}
	}
	errs = validate.MeshConfig(p, mc)
	if len(errs) > 0 {
		return nil, errs
	}
	return mc, nil
}

// DefaultMeshConfig is the MeshConfig in force when the user gives none.
func DefaultMeshConfig() *meshv1alpha1.MeshConfig {
	return &meshv1alpha1.MeshConfig{
		RootNamespace: DefaultRootNamespace,
		TrustDomain:   "cluster.local",
		OutboundTrafficPolicy: &meshv1alpha1.MeshConfig_OutboundTrafficPolicy{
			Mode: meshv1alpha1.MeshConfig_OutboundTrafficPolicy_ALLOW_ANY,
		},
	}
}

func validateConfigMap(m validate.Meta, cm *corev1.ConfigMap) field.List {
	errs := kubeapi.ConfigMap(m, cm)
	if cm.Name == MeshConfigMapName {
		if data, ok := cm.Data[MeshConfigKey]; ok {
			_, merrs := ParseMeshConfig(field.NewPath("data").Key(MeshConfigKey), data)
			errs = append(errs, merrs...)
		}
	}
	return errs
}
