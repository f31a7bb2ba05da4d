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
// its own pod's identity (shown on its /certs) using the credential only
// it was given; that credential cannot get another identity, and it is
// revoked and removed when its pod is gone. Traffic between the sidecars
// keeps flowing.
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
	creds := map[string]string{}
	for _, p := range st.Pods {
		if p.Sidecar == nil {
			t.Fatalf("pod %s/%s has no sidecar", p.Namespace, p.Name)
		}
		id := want[p.Deployment]
		if id == "" {
			t.Fatalf("unexpected pod %s/%s", p.Namespace, p.Name)
		}
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
		// Only the sidecar is told where its credential is.
		var credFile string
		for _, c := range p.Containers {
			env, err := local.ContainerEnv(&c)
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range env {
				if v, ok := strings.CutPrefix(kv, "TRELLIS_CREDENTIAL_FILE="); ok {
					if !c.Sidecar {
						t.Errorf("app container %s/%s is given the credential", p.Name, c.Name)
					}
					credFile = v
				}
			}
		}
		if credFile == "" {
			t.Fatalf("pod %s: the sidecar has no TRELLIS_CREDENTIAL_FILE", p.Name)
		}
		fi, err := os.Stat(credFile)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("pod %s: credential %s: %v, mode %v; want 0600", p.Name, credFile, err, fi.Mode())
		}
		b, err := os.ReadFile(credFile)
		if err != nil {
			t.Fatal(err)
		}
		creds[p.Deployment] = strings.TrimSpace(string(b))
	}
	if len(creds) != len(want) {
		t.Fatalf("pods %v, want %v", creds, want)
	}

	// Traffic between sidecars (now mutual TLS) still flows.
	if lines := curl(t, m, nil, "http://ratings:9080/ratings/0"); len(lines) != 1 || !strings.HasPrefix(lines[0], "200") {
		t.Errorf("sleep -> ratings: %v", lines)
	}

	// sleep's credential asking for ratings' identity gets sleep's.
	root, err := os.ReadFile(filepath.Join(m.StateDir, "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca := dialCA(t, filepath.Join(m.StateDir, "xds-tls.sock"), root)
	leaf, err := createCert(ca, creds["sleep"], want["ratings"])
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want["sleep"] {
		t.Errorf("sleep's credential asking for %s got %v, want only %s", want["ratings"], leaf.URIs, want["sleep"])
	}
	if _, err := createCert(ca, "not-a-credential", want["sleep"]); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a made-up credential: %v, want Unauthenticated", err)
	}

	// The tools pod goes: its credential is revoked and removed.
	toolsCred := findCredential(t, m.StateDir, "tools")
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
		if _, err := os.Stat(toolsCred); err == nil {
			return "its credential file is still there"
		}
		return ""
	})
	if _, err := createCert(ca, creds["tools"], want["tools"]); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the gone pod's credential: %v, want Unauthenticated", err)
	}
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

func findCredential(t *testing.T, stateDir, ns string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(stateDir, "pods", ns, "*", "credential"))
	if len(files) != 1 {
		t.Fatalf("credential files of namespace %s: %v", ns, files)
	}
	return files[0]
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
