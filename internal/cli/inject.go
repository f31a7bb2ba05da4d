package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/trellismesh/trellis/internal/kube/inject"
)

func newInjectCmd() *cobra.Command {
	var file string
	var native bool
	cmd := &cobra.Command{
		Use:   "inject [-f FILE|-]",
		Short: "Add the sidecar to the pods of Kubernetes YAML, offline (like istioctl kube-inject)",
		Long: `Inject reads Kubernetes YAML and writes it back with the trellis-proxy sidecar
added to every pod template: Pods, Deployments, StatefulSets, DaemonSets,
ReplicaSets, Jobs, CronJobs, and the items of Lists. Every other document is
written back unchanged, in order. It is the same mutation the injection webhook
makes, so the result can go straight to kubectl:

  kubectl get deploy -o yaml | trellis inject | kubectl apply -f -

Pods labelled or annotated sidecar.istio.io/inject: "false" are left alone, and
injecting twice changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in []byte
			var err error
			if file == "-" {
				in, err = io.ReadAll(cmd.InOrStdin())
			} else {
				in, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("reading input: %w", err)
			}
			out, err := injectYAML(in, inject.Options{NativeSidecars: native})
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "-", "the YAML to inject; - reads standard input")
	cmd.Flags().BoolVar(&native, "native-sidecars", true, "inject the proxy as a native sidecar (an init container with restartPolicy Always; Kubernetes >= 1.29); false gives the classic layout for older clusters")
	return cmd
}

// docSeparator is a YAML document separator line.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(?:#[^\n]*)?(?:\r?\n|\z)`)

// injectYAML injects every injectable document of a multi-document YAML
// stream. Documents it does not change are copied byte for byte, and
// separators are kept, so only the injected documents differ.
func injectYAML(in []byte, opts inject.Options) ([]byte, error) {
	var out bytes.Buffer
	seps := docSeparator.FindAllIndex(in, -1)
	start, doc := 0, 0
	emit := func(end int) error {
		text := in[start:end]
		if len(bytes.TrimSpace(text)) == 0 {
			out.Write(text)
			return nil
		}
		i := doc
		doc++
		changed, err := injectDocument(text, opts)
		if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if changed == nil {
			out.Write(text)
		} else {
			out.Write(changed)
		}
		return nil
	}
	for _, s := range seps {
		if err := emit(s[0]); err != nil {
			return nil, err
		}
		out.Write(in[s[0]:s[1]])
		start = s[1]
	}
	if err := emit(len(in)); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// injectDocument returns the document injected as YAML, or nil when it
// is unchanged (not a pod carrier, opted out, already injected).
func injectDocument(text []byte, opts inject.Options) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(text, &obj); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	if obj == nil {
		return nil, nil // comments only
	}
	changed, err := injectObject(obj, opts)
	if err != nil || !changed {
		return nil, err
	}
	return yaml.Marshal(obj)
}

// templatePaths is where each kind keeps its pod (template).
var templatePaths = map[string][]string{
	"Pod":         nil,
	"Deployment":  {"spec", "template"},
	"StatefulSet": {"spec", "template"},
	"DaemonSet":   {"spec", "template"},
	"ReplicaSet":  {"spec", "template"},
	"Job":         {"spec", "template"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template"},
}

// injectObject injects one object in place; errors are prefixed with
// the kind and name, and rooted at the object.
func injectObject(obj map[string]any, opts inject.Options) (bool, error) {
	kind, _ := obj["kind"].(string)
	name := ""
	if md, ok := obj["metadata"].(map[string]any); ok {
		name, _ = md["name"].(string)
	}
	if items, ok := obj["items"].([]any); ok && (kind == "List" || len(kind) > 4 && kind[len(kind)-4:] == "List") {
		anyChanged := false
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			c, err := injectObject(m, opts)
			if err != nil {
				return false, fmt.Errorf("items[%d]: %w", i, err)
			}
			anyChanged = anyChanged || c
		}
		return anyChanged, nil
	}
	path, ok := templatePaths[kind]
	if !ok {
		return false, nil
	}
	where := fmt.Sprintf("%s %q: ", kind, name)
	node := obj
	prefix := ""
	for _, p := range path {
		next, ok := node[p].(map[string]any)
		if !ok {
			return false, nil // no template: nothing to inject, kubectl will say why
		}
		node = next
		prefix += p + "."
	}
	b, err := json.Marshal(node)
	if err != nil {
		return false, err
	}
	var pt corev1.PodTemplateSpec
	if err := json.Unmarshal(b, &pt); err != nil {
		return false, fmt.Errorf("%s%s: %w", where, path0(prefix), err)
	}
	o := opts
	o.WorkloadName = name
	changed, err := inject.Pod(&pt.Spec, &pt.ObjectMeta, o)
	var fe *inject.FieldError
	if errors.As(err, &fe) {
		return false, fmt.Errorf("%s%s%s: %s", where, prefix, fe.Field, fe.Detail)
	}
	if err != nil || !changed {
		return false, err
	}
	b, err = json.Marshal(pt)
	if err != nil {
		return false, err
	}
	var injected map[string]any
	if err := json.Unmarshal(b, &injected); err != nil {
		return false, err
	}
	// A typed round trip adds an empty creationTimestamp; the input had none.
	if md, ok := injected["metadata"].(map[string]any); ok {
		if v, ok := md["creationTimestamp"]; ok && v == nil {
			delete(md, "creationTimestamp")
		}
	}
	// Only metadata and spec: a Pod's node is the whole object, whose
	// apiVersion, kind and status stay as they were.
	node["metadata"], node["spec"] = injected["metadata"], injected["spec"]
	return true, nil
}

func path0(prefix string) string {
	if prefix == "" {
		return "."
	}
	return prefix[:len(prefix)-1]
}
