package config

import (
	"errors"

	"sigs.k8s.io/yaml"

	"github.com/trellismesh/trellis/internal/config/inforce"
)

// NotInForceWarning is a warning about one field an object uses that the
// mesh does not (fully) enforce yet (code TRL0007). It is a warning, not
// an error: the object is used, and the warning says what happens instead.
type NotInForceWarning struct {
	Finding inforce.Finding
}

func (w *NotInForceWarning) Error() string {
	return "[" + inforce.Code + "] " + w.Finding.String()
}

// IsNotInForce reports whether err is (or wraps) a NotInForceWarning.
func IsNotInForce(err error) bool {
	var w *NotInForceWarning
	return errors.As(err, &w)
}

// checkInForce records on o the fields it uses that are not (fully) in
// force and returns one warning each. obj is the document as written.
func checkInForce(src Source, o *Object, obj map[string]any) []error {
	k := inforce.Kind{Group: o.Group, Kind: o.Kind}
	findings := inforce.Check(k, obj, "")
	if o.GroupKind == ConfigMap && o.Name == MeshConfigMapName {
		findings = append(findings, meshConfigInForce(obj)...)
	}
	o.NotInForce = findings
	out := make([]error, 0, len(findings))
	for _, f := range findings {
		out = append(out, &Error{Source: src, Object: o.ID(), Err: &NotInForceWarning{Finding: f}})
	}
	return out
}

// meshConfigInForce checks the MeshConfig inside the ConfigMap's `mesh`
// key. The ConfigMap was validated, so the YAML parses.
func meshConfigInForce(obj map[string]any) []inforce.Finding {
	data, _ := obj["data"].(map[string]any)
	text, _ := data[MeshConfigKey].(string)
	if text == "" {
		return nil
	}
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return nil
	}
	v, err := decodeJSON(js)
	if err != nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	return inforce.Check(inforce.MeshConfig, m, "data["+MeshConfigKey+"]")
}
