package kubeapi

import (
	"net/netip"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trellismesh/trellis/internal/config/field"
)

// Helpers shared by the Kubernetes core, Gateway API and SMI checks. They
// wrap apimachinery's validators (the same ones the API server runs) so a
// manifest that Trellis accepts is one kubectl apply would accept too.

// kubeMsgs reports each message of an apimachinery validator as its own
// error, naming the offending value so the user can find it.
func kubeMsgs(errs *field.List, p *field.Path, value, what string, msgs []string) {
	for _, msg := range msgs {
		errs.Add(p, "%q is not a valid %s: %s", value, what, msg)
	}
}

// kubeObjectMeta checks the metadata the decoder leaves alone: labels feed
// selectors, so a bad key would otherwise silently never match.
func kubeObjectMeta(errs *field.List, om *metav1.ObjectMeta) {
	kubeLabels(errs, field.NewPath("metadata", "labels"), om.Labels)
	kubeAnnotations(errs, field.NewPath("metadata", "annotations"), om.Annotations)
}

// kubeLabels checks label keys and values, in key order so that output is
// stable.
func kubeLabels(errs *field.List, p *field.Path, labels map[string]string) {
	for _, k := range kubeSortedKeys(labels) {
		kubeMsgs(errs, p.Key(k), k, "label key", validation.IsQualifiedName(k))
		kubeMsgs(errs, p.Key(k), labels[k], "label value", validation.IsValidLabelValue(labels[k]))
	}
}

// kubeAnnotations checks annotation keys; the API server compares them
// case-insensitively, so it lower-cases before checking.
func kubeAnnotations(errs *field.List, p *field.Path, annotations map[string]string) {
	for _, k := range kubeSortedKeys(annotations) {
		kubeMsgs(errs, p.Key(k), k, "annotation key", validation.IsQualifiedName(strings.ToLower(k)))
	}
}

func kubeSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// kubePort checks a required port number.
func kubePort(errs *field.List, p *field.Path, port int32) {
	if port < 1 || port > 65535 {
		errs.Add(p, "must be between 1 and 65535")
	}
}

// kubeProtocol checks a Kubernetes port protocol; empty means TCP.
func kubeProtocol(errs *field.List, p *field.Path, proto string) {
	switch proto {
	case "", "TCP", "UDP", "SCTP":
	default:
		errs.Add(p, "%q is not a protocol: use TCP, UDP or SCTP", proto)
	}
}

// kubeServiceName checks a Service name. Services are DNS-1035 labels (they
// become DNS names and environment variables), stricter than other objects.
func kubeServiceName(errs *field.List, p *field.Path, name string) {
	if name == "" {
		errs.Append(field.Required(p))
		return
	}
	kubeMsgs(errs, p, name, "Service name", validation.IsDNS1035Label(name))
}

// kubeServiceHost checks a Service reference that may be a short name or a
// DNS name under it (reviews, reviews.ns, reviews.ns.svc.cluster.local), as
// Trellis resolves Service names like Kubernetes DNS does.
func kubeServiceHost(errs *field.List, p *field.Path, host string) {
	if host == "" {
		errs.Append(field.Required(p))
		return
	}
	if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		kubeMsgs(errs, p, host, "Service name", msgs)
		return
	}
	first, _, _ := strings.Cut(host, ".")
	kubeMsgs(errs, p, host, "Service name", validation.IsDNS1035Label(first))
}

// kubeIPFamily says which family an address must be in; 0 means either.
type kubeIPFamily int

const (
	kubeAnyIP kubeIPFamily = iota
	kubeIPv4
	kubeIPv6
)

// kubeIP checks an IP address the way the API server's strict parser does:
// no zones, no IPv4-mapped IPv6 and no leading zeros (netip rejects those),
// and in the wanted family.
func kubeIP(errs *field.List, p *field.Path, value string, family kubeIPFamily) {
	a, err := netip.ParseAddr(value)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		errs.Add(p, "%q is not a valid IP address", value)
		return
	}
	switch {
	case family == kubeIPv4 && !a.Is4():
		errs.Add(p, "%q is not an IPv4 address", value)
	case family == kubeIPv6 && !a.Is6():
		errs.Add(p, "%q is not an IPv6 address", value)
	}
}

// kubeDuplicate remembers where each key was first seen so a duplicate can
// point at the original.
type kubeDuplicate map[string]*field.Path

// seen records key at p and reports whether it was already there, adding an
// error at p naming the first occurrence.
func (d kubeDuplicate) seen(errs *field.List, p *field.Path, key, what string) bool {
	if first, ok := d[key]; ok {
		errs.Add(p, "duplicate %s %q: already used at %s", what, key, first)
		return true
	}
	d[key] = p
	return false
}
