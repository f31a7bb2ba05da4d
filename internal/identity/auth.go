package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// An Authenticator says who made a request. It returns ErrNoCredential
// when the caller presented nothing it reads, and another error when what
// the caller presented is not good.
type Authenticator interface {
	Authenticate(ctx context.Context) (ID, error)
}

// ErrNoCredential means the caller presented no credential of a kind.
var ErrNoCredential = errors.New("no credential presented")

// Credentials are per-pod bearer tokens, each bound to exactly one
// identity when issued. Only the tokens' SHA-256 digests are kept.
//
// A token is reusable (Issue) until revoked, or single-use (IssueOnce):
// spent by the first certificate issued with it, so a copy taken later
// (from a process's memory, a log, a replayed request) gets nothing.
type Credentials struct {
	mu       sync.Mutex
	byDigest map[[sha256.Size]byte]*credential
}

type credential struct {
	id   ID
	once bool
	// busy marks a single-use token a request is redeeming: a second
	// request with it is refused until the first one's outcome is known.
	busy bool
}

// NewCredentials returns an empty set.
func NewCredentials() *Credentials {
	return &Credentials{byDigest: map[[sha256.Size]byte]*credential{}}
}

// Issue makes a new random 256-bit token that authenticates as id (and
// nothing else) until revoked. Hand it to that workload's proxy alone.
func (c *Credentials) Issue(id ID) (string, error) {
	return c.issue(id, false)
}

// IssueOnce makes a token like Issue's that is spent by the first
// certificate the CA issues with it: after that it authenticates nothing
// and the holder renews with that certificate. A request that fails
// before a certificate is issued leaves it usable. Until spent, Revoke
// ends it as it ends any token.
func (c *Credentials) IssueOnce(id ID) (string, error) {
	return c.issue(id, true)
}

func (c *Credentials) issue(id ID, once bool) (string, error) {
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("credential: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("credential: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	c.mu.Lock()
	c.byDigest[sha256.Sum256([]byte(tok))] = &credential{id: id, once: once}
	c.mu.Unlock()
	return tok, nil
}

// Revoke makes token authenticate nothing from now on.
func (c *Credentials) Revoke(token string) {
	c.mu.Lock()
	delete(c.byDigest, sha256.Sum256([]byte(token)))
	c.mu.Unlock()
}

// Lookup returns the identity token was issued for, without spending a
// single-use token. Tokens are found by their SHA-256 digest, so the time
// a lookup takes depends on the digest, which tells an attacker nothing
// about a valid token, rather than on how many leading bytes of a guess
// are right.
func (c *Credentials) Lookup(token string) (ID, bool) {
	d := sha256.Sum256([]byte(token))
	c.mu.Lock()
	e, ok := c.byDigest[d]
	c.mu.Unlock()
	if !ok {
		return ID{}, false
	}
	return e.id, true
}

// redeem authenticates token for a request. A single-use token is held
// for the request and settled by its outcome (see redemption); without a
// redemption in ctx it is spent at once.
func (c *Credentials) redeem(ctx context.Context, token string) (ID, error) {
	d := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byDigest[d]
	if !ok {
		return ID{}, errors.New("metadata authorization: the token is not valid (revoked, already spent on a certificate, or not issued by this control plane): a sidecar of trellis up gets a new one each time it starts, so restart it")
	}
	if !e.once {
		return e.id, nil
	}
	if e.busy {
		return ID{}, errors.New("metadata authorization: this single-use token is being redeemed by another request: it gets one certificate only")
	}
	r, _ := ctx.Value(redemptionKey{}).(*redemption)
	if r == nil {
		delete(c.byDigest, d)
		return e.id, nil
	}
	e.busy = true
	r.add(func(issued bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.byDigest[d] != e {
			return // revoked meanwhile
		}
		if issued {
			delete(c.byDigest, d)
		} else {
			e.busy = false
		}
	})
	return e.id, nil
}

// Authenticate reads `authorization: Bearer <token>` from the request's
// gRPC metadata.
func (c *Credentials) Authenticate(ctx context.Context) (ID, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return ID{}, ErrNoCredential
	}
	if len(vals) > 1 {
		return ID{}, errors.New("metadata authorization: sent more than once; send one `Bearer <token>`")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return ID{}, errors.New("metadata authorization: must be `Bearer <token>`")
	}
	return c.redeem(ctx, strings.TrimSpace(tok))
}

// A redemption settles the single-use credentials a request presented
// once it is known whether a certificate was issued: spent if one was,
// usable again if not (a malformed CSR must not cost the workload its
// only credential).
type redemption struct {
	mu     sync.Mutex
	settle []func(issued bool)
}

type redemptionKey struct{}

// withRedemption returns ctx carrying a new redemption; call its done
// with the request's outcome.
func withRedemption(ctx context.Context) (context.Context, *redemption) {
	r := &redemption{}
	return context.WithValue(ctx, redemptionKey{}, r), r
}

func (r *redemption) add(f func(issued bool)) {
	r.mu.Lock()
	r.settle = append(r.settle, f)
	r.mu.Unlock()
}

func (r *redemption) done(issued bool) {
	r.mu.Lock()
	fs := r.settle
	r.settle = nil
	r.mu.Unlock()
	for _, f := range fs {
		f(issued)
	}
}

// PeerCertificate authenticates a caller by the mesh certificate it
// presented over mTLS, verified against the CA's roots at the handshake.
// It lets a workload renew for the identity it already holds.
type PeerCertificate struct {
	// Now is the clock (default time.Now): a connection made while the
	// certificate was valid may outlive it.
	Now func() time.Time
	// Roots, when set, are the roots the certificate must verify against
	// at the request, not only at the handshake: a connection may outlive
	// the trust in its root (RemoveOldRoots).
	Roots func() *x509.CertPool
}

// Authenticate implements Authenticator.
func (pc PeerCertificate) Authenticate(ctx context.Context) (ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ID{}, ErrNoCredential
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ID{}, ErrNoCredential
	}
	if len(ti.State.VerifiedChains) == 0 {
		// The server config must verify client certificates; one that
		// was merely presented proves nothing.
		return ID{}, errors.New("client certificate: not verified against the mesh roots")
	}
	leaf := ti.State.PeerCertificates[0]
	now := time.Now
	if pc.Now != nil {
		now = pc.Now
	}
	if t := now(); t.After(leaf.NotAfter) || t.Before(leaf.NotBefore) {
		return ID{}, fmt.Errorf("client certificate: valid only from %s to %s: use the pod's credential instead", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if pc.Roots != nil {
		inter := x509.NewCertPool()
		for _, c := range ti.State.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pc.Roots(), Intermediates: inter, CurrentTime: now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return ID{}, fmt.Errorf("client certificate: no longer verifies against the mesh roots (%w): use the pod's credential instead", err)
		}
	}
	id, err := FromCertificate(leaf)
	if err != nil {
		return ID{}, fmt.Errorf("client %w", err)
	}
	return id, nil
}
