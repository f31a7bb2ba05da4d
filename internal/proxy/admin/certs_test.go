package admin

import (
	"crypto/ecdsa"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/testing/certtest"
)

type identityFake struct {
	*fakeSource
	id certs.Source
}

func (f identityFake) WorkloadIdentity() certs.Source { return f.id }

func TestCertsPage(t *testing.T) {
	ca := certtest.NewCA(t).Intermediate(t)
	id := certtest.SPIFFE("default", "sleep")
	leaf := ca.Leaf(t, id, certtest.LeafOptions{})

	page := func(src Source) (certsPage, string) {
		t.Helper()
		r := do(NewAdmin(src, nil), fromPod(httptest.NewRequest("GET", "/certs", nil)))
		if r.Status != 200 || r.ContentType != ctJSON {
			t.Fatalf("GET /certs: %d %s: %s", r.Status, r.ContentType, r.Body)
		}
		var p certsPage
		if err := json.Unmarshal([]byte(r.Body), &p); err != nil {
			t.Fatalf("%v: %s", err, r.Body)
		}
		return p, r.Body
	}

	// A proxy with no identity lists none.
	if p, body := page(newFake()); len(p.Certificates) != 0 || p.Error != "" {
		t.Errorf("without an identity: %s", body)
	}
	// Nothing issued yet: the reason.
	if p, body := page(identityFake{newFake(), &certs.Static{}}); len(p.Certificates) != 0 || !strings.Contains(p.Error, "no workload certificate") {
		t.Errorf("before issue: %s", body)
	}
	p, body := page(identityFake{newFake(), certs.NewStatic(leaf, ca.Pool())})
	if len(p.Certificates) != 1 {
		t.Fatalf("want one certificate: %s", body)
	}
	c := p.Certificates[0]
	if c.SPIFFEID != id || c.SerialNumber != leaf.Leaf.SerialNumber.Text(16) || !c.NotAfter.Equal(leaf.Leaf.NotAfter) || len(c.CertChain) != 2 {
		t.Errorf("certificate does not describe the leaf and its intermediate: %s", body)
	}
	if !strings.Contains(c.CertChainPEM, "BEGIN CERTIFICATE") {
		t.Errorf("no chain PEM: %s", body)
	}
	certtest.AssertNoPrivateKey(t, "/certs", body, leaf.PrivateKey.(*ecdsa.PrivateKey))
}
