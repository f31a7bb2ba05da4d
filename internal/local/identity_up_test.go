package local_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1 "istio.io/api/security/v1alpha1"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// tools: a pod in another namespace with no service account named, so
// its identity is that namespace's default account.
const toolsYAML = `apiVersion: apps/v1
kind: Deployment
metadata: {name: tools, namespace: tools}
spec:
  selector: {matchLabels: {app: tools}}
  template:
    metadata: {labels: {app: tools}}
    spec:
      containers:
      - name: tools
        image: trellis
        command: ["trellis", "demo", "sleep"]
`

// Every sidecar of `trellis up` gets a certificate from the mesh CA for
// its own pod's identity (shown on its /certs) with a credential handed
// to it alone through an inherited pipe: no credential is in the state
// dir or in any container's environment (TRELLIS_CREDENTIAL_FD names a
// descriptor only the sidecar has). Traffic between the sidecars keeps
// flowing, and a pod that goes takes nothing of its identity with it.
func TestUpIssuesEachPodItsIdentity(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	dir := copyDir(t, "testdata/small")
	writeFile(t, filepath.Join(dir, "tools.yaml"), toolsYAML)
	m := uptest.Start(t, dir)
	st := readState(t, m)

	want := map[string]string{
		"ratings": "spiffe://cluster.local/ns/default/sa/ratings",
		"sleep":   "spiffe://cluster.local/ns/default/sa/sleep",
		"tools":   "spiffe://cluster.local/ns/tools/sa/default",
	}
	seen := map[string]bool{}
	for _, p := range st.Pods {
		if p.Sidecar == nil {
			t.Fatalf("pod %s/%s has no sidecar", p.Namespace, p.Name)
		}
		id := want[p.Deployment]
		if id == "" {
			t.Fatalf("unexpected pod %s/%s", p.Namespace, p.Name)
		}
		seen[p.Deployment] = true
		page := adminGet(t, p.Sidecar.AdminSocket, "/certs")
		var certs struct {
			Certificates []struct {
				SPIFFEID string `json:"spiffe_id"`
			} `json:"certificates"`
		}
		if err := json.Unmarshal([]byte(page), &certs); err != nil || len(certs.Certificates) != 1 || certs.Certificates[0].SPIFFEID != id {
			t.Errorf("pod %s: /certs shows %s, want %s (%v)", p.Name, page, id, err)
		}
		if strings.Contains(page, "PRIVATE KEY") {
			t.Errorf("pod %s: /certs shows a private key", p.Name)
		}
		// Only the sidecar is told of a credential, and only of a
		// descriptor: no container gets a token or a file.
		fd := false
		for _, c := range p.Containers {
			env, err := local.ContainerEnv(&c)
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range env {
				name, v, _ := strings.Cut(kv, "=")
				switch {
				case name == "TRELLIS_CREDENTIAL_FD" && c.Sidecar:
					fd = v == "3"
				case strings.Contains(name, "CREDENTIAL"):
					t.Errorf("container %s/%s is given %s", p.Name, c.Name, kv)
				}
			}
		}
		if !fd {
			t.Errorf("pod %s: the sidecar has no TRELLIS_CREDENTIAL_FD=3", p.Name)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("pods %v, want %v", seen, want)
	}
	// No credential file, and no pods folder at all: these pods keep
	// nothing of their identity on disk.
	if _, err := os.Stat(filepath.Join(m.StateDir, "pods")); !os.IsNotExist(err) {
		t.Errorf("the state dir has a pods folder (%v): credentials on disk?", err)
	}
	filepath.WalkDir(m.StateDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "credential") {
			t.Errorf("state dir holds %s", path)
		}
		return nil
	})

	// Traffic between sidecars (now mutual TLS) still flows.
	if lines := curl(t, m, nil, "http://ratings:9080/ratings/0"); len(lines) != 1 || !strings.HasPrefix(lines[0], "200") {
		t.Errorf("sleep -> ratings: %v", lines)
	}

	root, err := os.ReadFile(filepath.Join(m.StateDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca := dialCA(t, filepath.Join(m.StateDir, "xds-tls.sock"), root)
	if _, err := createCert(ca, "not-a-credential", want["sleep"]); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a made-up credential: %v, want Unauthenticated", err)
	}

	// The tools pod goes, and with it its folder if it had one.
	if err := os.Remove(filepath.Join(dir, "tools.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the tools pod to go", func() string {
		s, err := local.ReadState(m.StateDir)
		if err != nil {
			return err.Error()
		}
		for _, p := range s.Pods {
			if p.Namespace == "tools" {
				return "pod " + p.Name + " " + p.Phase
			}
		}
		if _, err := os.Stat(filepath.Join(m.StateDir, "pods", "tools")); err == nil {
			return "its folder is still there"
		}
		return ""
	})
}

func adminGet(t *testing.T, socket, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://sidecar" + path)
	if err != nil {
		t.Fatalf("sidecar %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("sidecar %s: %d %v: %s", path, resp.StatusCode, err, b)
	}
	return string(b)
}

// dialCA connects to the control plane's CA with grpc-go, verifying it
// against the mesh root, as any CA client would.
func dialCA(t *testing.T, sock string, rootPEM []byte) securityv1.IstioCertificateServiceClient {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("root-cert.pem holds no certificate")
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return securityv1.NewIstioCertificateServiceClient(conn)
}

// createCert asks the CA for a certificate with token, the CSR claiming
// the SPIFFE ID claim; it returns the issued leaf.
func createCert(ca securityv1.IstioCertificateServiceClient, token, claim string) (*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(claim)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	resp, err := ca.CreateCertificate(ctx, &securityv1.IstioCertificateRequest{
		Csr:              string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
		ValidityDuration: 3600,
	})
	if err != nil {
		return nil, err
	}
	if len(resp.CertChain) == 0 {
		return nil, io.ErrUnexpectedEOF
	}
	block, _ := pem.Decode([]byte(resp.CertChain[0]))
	if block == nil {
		return nil, io.ErrUnexpectedEOF
	}
	return x509.ParseCertificate(block.Bytes)
}
