package sidecar_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/testing/leak"
	"github.com/trellismesh/trellis/internal/testing/meshtest"
)

// Certificates rotate every second or two in these tests: the CA issues
// them for rotationTTL (whole seconds, as X.509 times are, and backdated)
// and each Manager renews at half life.
const rotationTTL = 5 * time.Second

// rotationConfig is reviews (one endpoint, base.2, with a sidecar, service
// account reviews) whose client connections carry at most 25 requests
// each, so that new tunnel connections, each with its own mTLS handshake,
// keep being made all through a load, across every rotation.
func rotationConfig(base string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews}
spec: {address: %s.2, serviceAccount: reviews, labels: {app: reviews, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {maxRequestsPerConnection: 25}
`, base)
}

// issuedCert is one certificate a Manager got, as the test saw it.
type issuedCert struct {
	serial string
	hash   string // sha256 of the leaf's DER, hex: XFCC's Hash
	root   string // serial of the root the CA sent with it
	at     time.Time
}

// certWatch records every certificate an identity holds, in order, by
// waiting on the Manager's Updated event.
type certWatch struct {
	mu    sync.Mutex
	certs []issuedCert
	// changed is closed and replaced at each new certificate.
	changed chan struct{}
}

func watchCerts(t *testing.T, id *meshtest.Identity, onNew func(issuedCert)) *certWatch {
	w := &certWatch{changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			next := id.Updated() // before reading, so no update is missed
			snap, err := id.Snapshot()
			c, cerr := id.Certificate()
			if err == nil && cerr == nil && len(snap.CertChain) > 0 {
				sum := sha256.Sum256(c.Certificate[0])
				ic := issuedCert{serial: snap.SerialNumber, hash: hex.EncodeToString(sum[:]),
					root: snap.CertChain[len(snap.CertChain)-1].SerialNumber, at: time.Now()}
				w.mu.Lock()
				fresh := len(w.certs) == 0 || w.certs[len(w.certs)-1].serial != ic.serial
				if fresh {
					w.certs = append(w.certs, ic)
					close(w.changed)
					w.changed = make(chan struct{})
				}
				w.mu.Unlock()
				if fresh && onNew != nil {
					onNew(ic)
				}
			}
			select {
			case <-next:
			case <-ctx.Done():
				return
			}
		}
	}()
	return w
}

func (w *certWatch) all() []issuedCert {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]issuedCert(nil), w.certs...)
}

// waitFor waits (up to within) until cond holds for the certificates seen.
func (w *certWatch) waitFor(t *testing.T, within time.Duration, what string, cond func([]issuedCert) bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		ok, ch := cond(w.certs), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("not within %s: %s (certificates: %d)", within, what, len(w.all()))
		}
	}
}

// xfccLog is what the app behind the server sidecar saw of its callers'
// certificates: the Hash of each request's X-Forwarded-Client-Cert.
type xfccLog struct {
	mu     sync.Mutex
	hashes map[string]int
	bad    []string
}

func (x *xfccLog) handler(w http.ResponseWriter, r *http.Request) {
	xfcc := r.Header.Get("X-Forwarded-Client-Cert")
	hash := ""
	for f := range strings.SplitSeq(xfcc, ";") {
		if v, ok := strings.CutPrefix(f, "Hash="); ok {
			hash = v
		}
	}
	x.mu.Lock()
	if hash == "" && len(x.bad) < 5 {
		x.bad = append(x.bad, xfcc)
	}
	if x.hashes == nil {
		x.hashes = map[string]int{}
	}
	x.hashes[hash]++
	x.mu.Unlock()
	io.WriteString(w, "reviews")
}

func (x *xfccLog) seen(hash string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.hashes[hash] > 0
}

// loadResult counts a bounded load's outcomes.
type loadResult struct {
	sent, failed atomic.Int64
	mu           sync.Mutex
	errs         []string
}

func (l *loadResult) fail(msg string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, msg)
	}
	l.mu.Unlock()
}

// runLoad sends total GETs to url through c from conc keep-alive clients,
// paced evenly over about `over` (and never past 3×over), and reports any
// that did not come back 200 from reviews. It returns at once; the result
// is complete when done is closed.
func runLoad(c *http.Client, url string, total, conc int, over time.Duration) (res *loadResult, done <-chan struct{}) {
	res = &loadResult{}
	ch := make(chan struct{})
	interval := over * time.Duration(conc) / time.Duration(total)
	start := time.Now()
	hardStop := start.Add(3 * over)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			next := start.Add(interval * time.Duration(w) / time.Duration(conc))
			for range total / conc {
				if time.Now().After(hardStop) {
					return
				}
				if d := time.Until(next); d > 0 {
					time.Sleep(d) // pacing the load, not synchronisation
				}
				next = next.Add(interval)
				res.sent.Add(1)
				resp, err := c.Get(url)
				if err != nil {
					res.fail(err.Error())
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(b) != "reviews" {
					res.fail(fmt.Sprintf("%d %s %q %v", resp.StatusCode, resp.Header.Get("X-Trellis-Flags"), b, err))
				}
			}
		})
	}
	go func() { wg.Wait(); close(ch) }()
	return res, ch
}

// serverSerial opens a new mTLS connection to pod's tunnel port as a mesh
// client with id and returns the serial of the certificate the server
// presented.
func serverSerial(id certs.Source, podIP string) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", podIP+":15008", certs.ClientConfig(id, nil))
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// Both sidecars' certificates, from the mesh CA, live 4 s and rotate
// every 2 s while 3,000 requests flow from sleep through its sidecar, the
// mTLS tunnel and reviews' sidecar to reviews' app, on connections of 25
// requests each (a new tunnel handshake every few dozen requests): not one
// request fails, each side rotates at least twice, the app sees every
// certificate the client rotated to (XFCC Hash, from new tunnel
// connections), and a new connection to reviews' tunnel port meets the
// server's certificate of the moment.
func TestCertificateRotationUnderLoad(t *testing.T) {
	leak.Check(t)
	const base = "127.77.231"
	m := meshtest.New(t, rotationConfig(base), meshtest.WithCA())
	xfcc := &xfccLog{}
	m.Backend(base+".2:9080", "reviews", xfcc.handler)
	serverID := m.Identity("default", "reviews", rotationTTL)
	clientID := m.Identity("default", "sleep", rotationTTL)
	m.Sidecar("reviews", base+".2", map[string]string{"app": "reviews"}, m.WithIdentity(serverID))
	client := m.Sidecar("sleep", base+".1", nil, m.WithIdentity(clientID))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	meshtest.Eventually(t, 5*time.Second, func() string {
		if code, flags, body, _ := get(c, "http://reviews:9080/", nil); code != 200 || body != "reviews" {
			return fmt.Sprintf("reviews answered %d %s %q", code, flags, body)
		}
		return ""
	})

	var probeErrs []string
	var probeMu sync.Mutex
	probes := 0
	serverCerts := watchCerts(t, serverID, func(ic issuedCert) {
		// A new connection must meet this certificate (or a later one,
		// should the next rotation come first).
		got, err := serverSerial(clientID, base+".2")
		probeMu.Lock()
		defer probeMu.Unlock()
		probes++
		if err != nil {
			probeErrs = append(probeErrs, fmt.Sprintf("a new connection to reviews' tunnel port after its rotation to %s: %v", ic.serial, err))
			return
		}
		if cur, _ := serverID.Snapshot(); got != ic.serial && got != cur.SerialNumber {
			probeErrs = append(probeErrs, fmt.Sprintf("reviews rotated to %s, a new connection got %s", ic.serial, got))
		}
	})
	clientCerts := watchCerts(t, clientID, nil)
	start := time.Now()
	before := len(serverCerts.all()) + len(clientCerts.all())

	res, done := runLoad(c, "http://reviews:9080/", 3000, 8, 10*time.Second)
	rotatedTwice := func(cs []issuedCert) bool {
		n := 0
		for _, ic := range cs {
			if ic.at.After(start) {
				n++
			}
		}
		return n >= 2
	}
	serverCerts.waitFor(t, 15*time.Second, "reviews' sidecar rotated twice under load", rotatedTwice)
	clientCerts.waitFor(t, 15*time.Second, "sleep's sidecar rotated twice under load", rotatedTwice)
	<-done
	elapsed := time.Since(start)

	if n := res.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed across the rotations; first: %q", n, res.sent.Load(), res.errs)
	}
	if n := res.sent.Load(); n != 3000 {
		t.Errorf("the load sent %d requests, want 3000 (it ran out of time)", n)
	}
	sc, cc := serverCerts.all(), clientCerts.all()
	t.Logf("3000 requests in %s; reviews held %d certificates, sleep %d (%d before the load); %d server probes; %d tunnel handshakes",
		elapsed.Round(time.Millisecond), len(sc), len(cc), before, probes, statInt(t, client, "tunnel.upstream.ssl.handshake"))
	probeMu.Lock()
	for _, e := range probeErrs {
		t.Error(e)
	}
	probeMu.Unlock()
	xfcc.mu.Lock()
	if len(xfcc.bad) > 0 {
		t.Errorf("requests reached reviews without a client certificate hash in XFCC: %q", xfcc.bad)
	}
	xfcc.mu.Unlock()
	// Every certificate sleep held for a while before the load ended was
	// presented on the new tunnel connections made meanwhile.
	end := start.Add(elapsed)
	for i, ic := range cc {
		until := end
		if i+1 < len(cc) {
			until = cc[i+1].at
		}
		if ic.at.After(start) && until.Sub(ic.at) > time.Second && !xfcc.seen(ic.hash) {
			t.Errorf("sleep rotated to %s at +%s (held %s) but no request reached reviews with it", ic.serial, ic.at.Sub(start).Round(time.Millisecond), until.Sub(ic.at).Round(time.Millisecond))
		}
	}
	for _, name := range []string{"tunnel.upstream.ssl.connection_error"} {
		if n := statInt(t, client, name); n != 0 {
			t.Errorf("sleep's %s = %d, want 0", name, n)
		}
	}
}

// The CA rotates its root while 3,000 requests flow: the old root stays
// in the trust bundle, the new bundle is published to each sidecar's
// root-cert.pem, both sidecars move to certificates from the new root at
// their next renewals (and renew again under it), and not one request
// fails, in the moment where one side holds a new-root certificate and
// the other still an old one included.
func TestRootRotationUnderLoad(t *testing.T) {
	leak.Check(t)
	const base = "127.77.232"
	m := meshtest.New(t, rotationConfig(base), meshtest.WithCA())
	xfcc := &xfccLog{}
	m.Backend(base+".2:9080", "reviews", xfcc.handler)
	serverID := m.Identity("default", "reviews", rotationTTL)
	clientID := m.Identity("default", "sleep", rotationTTL)
	m.Sidecar("reviews", base+".2", map[string]string{"app": "reviews"}, m.WithIdentity(serverID))
	client := m.Sidecar("sleep", base+".1", nil, m.WithIdentity(clientID))
	m.WaitSynced()
	c := client.Client()
	defer c.CloseIdleConnections()
	meshtest.Eventually(t, 5*time.Second, func() string {
		if code, flags, body, _ := get(c, "http://reviews:9080/", nil); code != 200 || body != "reviews" {
			return fmt.Sprintf("reviews answered %d %s %q", code, flags, body)
		}
		return ""
	})
	serverCerts := watchCerts(t, serverID, nil)
	clientCerts := watchCerts(t, clientID, nil)
	// A workload whose certificate (an hour long) is not renewed during
	// the test.
	details := m.Identity("default", "details", time.Hour)
	ca := m.ControlPlane().CA()
	oldRoot := ca.Root().SerialNumber.Text(16)

	loadStart := time.Now()
	res, done := runLoad(c, "http://reviews:9080/", 3000, 8, 10*time.Second)
	// Let a rotation under the old root happen first.
	renewed := func(cs []issuedCert) bool { return len(cs) >= 2 }
	serverCerts.waitFor(t, 10*time.Second, "reviews renewed under the old root", renewed)
	clientCerts.waitFor(t, 10*time.Second, "sleep renewed under the old root", renewed)

	if err := ca.Rotate(); err != nil {
		t.Fatal(err)
	}
	newRoot := ca.Root().SerialNumber.Text(16)
	if newRoot == oldRoot {
		t.Fatal("Rotate kept the root")
	}
	m.PublishRoots(serverID, clientID, details)
	rotated := time.Now()
	// From the moment the bundle is published, a certificate from the new
	// root (ratings', issued now) and one from the old root that will not
	// be renewed for half an hour (details') trust each other, both ways.
	ratings := m.Identity("default", "ratings", time.Hour)
	if got := rootOf(t, ratings); got != newRoot {
		t.Fatalf("ratings' certificate is from root %s, want the new root %s", got, newRoot)
	}
	if got := rootOf(t, details); got != oldRoot {
		t.Fatalf("details' certificate is from root %s, want the old root %s", got, oldRoot)
	}
	if err := handshake(base+".5", details, ratings); err != nil {
		t.Errorf("old-root server, new-root client, right after the bundle was published: %v", err)
	}
	if err := handshake(base+".5", ratings, details); err != nil {
		t.Errorf("new-root server, old-root client, right after the bundle was published: %v", err)
	}
	// Each side renews from the new root, then once more under it.
	twiceUnderNew := func(cs []issuedCert) bool {
		n := 0
		for _, ic := range cs {
			if ic.root == newRoot {
				n++
			}
		}
		return n >= 2
	}
	serverCerts.waitFor(t, 15*time.Second, "reviews renewed twice from the new root", twiceUnderNew)
	clientCerts.waitFor(t, 15*time.Second, "sleep renewed twice from the new root", twiceUnderNew)
	<-done

	if n := res.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed across the root rotation; first: %q", n, res.sent.Load(), res.errs)
	}
	if n := res.sent.Load(); n != 3000 {
		t.Errorf("the load sent %d requests, want 3000 (it ran out of time)", n)
	}
	t.Logf("root rotated at +%s into the load", rotated.Sub(loadStart).Round(time.Millisecond))
	var sawNew bool
	for _, ic := range clientCerts.all() {
		if ic.root == newRoot && xfcc.seen(ic.hash) {
			sawNew = true
		}
	}
	if !sawNew {
		t.Error("no request reached reviews over a connection with sleep's new-root certificate")
	}
	snap, err := clientID.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var bundle []string
	for _, r := range snap.CACert {
		bundle = append(bundle, r.SerialNumber)
	}
	if !strings.Contains(strings.Join(bundle, ","), oldRoot) || !strings.Contains(strings.Join(bundle, ","), newRoot) {
		t.Errorf("sleep's trust bundle is %v, want the old root %s and the new %s", bundle, oldRoot, newRoot)
	}
	if n := statInt(t, client, "tunnel.upstream.ssl.connection_error"); n != 0 {
		t.Errorf("sleep's tunnel.upstream.ssl.connection_error = %d, want 0", n)
	}
}

func rootOf(t *testing.T, id *meshtest.Identity) string {
	t.Helper()
	snap, err := id.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return snap.CertChain[len(snap.CertChain)-1].SerialNumber
}

// handshake runs one mesh mTLS handshake on loopback at ip between a
// server with identity srv and a client with identity cli, each verifying
// the other as the sidecars do (certs.ServerConfig, certs.ClientConfig).
func handshake(ip string, srv, cli certs.Source) error {
	ln, err := tls.Listen("tcp", ip+":0", certs.ServerConfig(srv, nil))
	if err != nil {
		return err
	}
	defer ln.Close()
	serr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		serr <- c.(*tls.Conn).Handshake()
	}()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), certs.ClientConfig(cli, nil))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	// TLS 1.3: the server checks the client's certificate after the
	// client's side of the handshake is done; the server's Handshake
	// returns its verdict.
	defer c.Close() // the server may have closed first: its error, if any, is serr's
	if err := <-serr; err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}
