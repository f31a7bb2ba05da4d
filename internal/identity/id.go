package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ID is a workload's SPIFFE identity as Istio names it:
// spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
type ID struct {
	TrustDomain, Namespace, ServiceAccount string
}

// String is the SPIFFE ID.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the SPIFFE ID as a certificate's URI SAN.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Validate checks that every part is present and can be written into a
// SPIFFE ID without changing its meaning.
func (id ID) Validate() error {
	if err := checkSegment("trustDomain", id.TrustDomain, true); err != nil {
		return err
	}
	if err := checkSegment("namespace", id.Namespace, false); err != nil {
		return err
	}
	return checkSegment("serviceAccount", id.ServiceAccount, false)
}

func checkSegment(name, v string, domain bool) error {
	if v == "" {
		return fmt.Errorf("%s: must not be empty", name)
	}
	for _, r := range v {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_'
		if !ok {
			return fmt.Errorf("%s: %q has %q; SPIFFE allows letters, digits, '-', '.' and '_'", name, v, r)
		}
	}
	if domain && strings.ToLower(v) != v {
		return fmt.Errorf("%s: %q must be lower case", name, v)
	}
	if !domain && (v == "." || v == "..") {
		return fmt.Errorf("%s: %q is not a path segment", name, v)
	}
	return nil
}

// Parse reads a SPIFFE ID of Istio's form. Errors are rooted at the part
// that is wrong.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	switch {
	case u.Scheme != "spiffe":
		return ID{}, fmt.Errorf("SPIFFE ID %q: scheme: must be spiffe", s)
	case u.User != nil || u.Port() != "":
		return ID{}, fmt.Errorf("SPIFFE ID %q: trustDomain: only a name may come before the path", s)
	case u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.Contains(s, "%"):
		return ID{}, fmt.Errorf("SPIFFE ID %q: no query, fragment or escaped characters allowed", s)
	}
	parts := strings.Split(u.Path, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "ns" || parts[3] != "sa" {
		return ID{}, fmt.Errorf("SPIFFE ID %q: path: must be /ns/<namespace>/sa/<service account>", s)
	}
	id := ID{TrustDomain: u.Host, Namespace: parts[2], ServiceAccount: parts[4]}
	if err := id.Validate(); err != nil {
		return ID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return id, nil
}

// FromCertificate is the identity of an X.509 SVID: its one spiffe:// URI
// SAN, which must be of Istio's form.
func FromCertificate(c *x509.Certificate) (ID, error) {
	var found string
	for _, u := range c.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if found != "" {
			return ID{}, errors.New("certificate: has more than one spiffe:// URI SAN; an SVID has exactly one")
		}
		found = u.String()
	}
	if found == "" {
		return ID{}, errors.New("certificate: has no spiffe:// URI SAN")
	}
	id, err := Parse(found)
	if err != nil {
		return ID{}, fmt.Errorf("certificate: URI SAN: %w", err)
	}
	return id, nil
}
