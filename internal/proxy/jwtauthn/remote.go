package jwtauthn

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for remote JWKS, Envoy's where it has one.
const (
	// DefaultCacheDuration is how long fetched keys stand before they are
	// fetched again (Envoy's remote_jwks default).
	DefaultCacheDuration = 10 * time.Minute
	// DefaultFetchTimeout bounds one fetch.
	DefaultFetchTimeout = 5 * time.Second
	// DefaultFailedRefetch is the first wait after a failed fetch (Envoy's
	// async_fetch failed_refetch_duration); it doubles up to
	// maxFailedRefetch while fetches keep failing.
	DefaultFailedRefetch = time.Second
	maxFailedRefetch     = 30 * time.Second
	// minKickInterval bounds how often a token signed by a key the cached
	// set lacks may start a fetch ahead of time (a key rotation).
	minKickInterval = 5 * time.Second
)

// Cache holds the remote JWKS of the proxy's filters. Each is fetched in
// the background when a filter first names it and again every cache
// duration; requests read the last keys fetched and never wait for a
// fetch. An entry lives while some filter names it; a config update that
// keeps a jwksUri keeps its keys and its fetcher. Close stops every
// fetcher.
type Cache struct {
	client *http.Client
	log    *slog.Logger

	mu      sync.Mutex
	entries map[remoteKey]*remote
	closed  bool
	wg      sync.WaitGroup
}

// CacheOptions configure a Cache.
type CacheOptions struct {
	// Client fetches the key sets; nil uses one that dials directly
	// (never through HTTP_PROXY) and verifies HTTPS against the system's
	// roots.
	Client *http.Client
	Log    *slog.Logger
}

// NewCache makes an empty cache.
func NewCache(o CacheOptions) *Cache {
	c := &Cache{client: o.Client, log: o.Log, entries: map[remoteKey]*remote{}}
	if c.client == nil {
		c.client = &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: DefaultFetchTimeout}).DialContext,
			TLSHandshakeTimeout: DefaultFetchTimeout,
			MaxIdleConns:        4,
			IdleConnTimeout:     time.Minute,
		}}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c
}

type remoteKey struct {
	uri           string
	cacheDuration time.Duration
	timeout       time.Duration
	failedRefetch time.Duration
}

// remote is one fetched JWKS and its fetcher.
type remote struct {
	key      remoteKey
	keys     atomic.Pointer[KeySet] // nil until a fetch succeeds
	refs     int                    // filters naming it; under Cache.mu
	kick     chan struct{}
	stop     chan struct{}
	fetched  atomic.Int64 // unix nanos of the last successful fetch
	lastKick atomic.Int64
}

// Remote is a filter's handle on a remote JWKS.
type Remote struct {
	r *remote
}

// Keys returns the last keys fetched, nil before the first fetch
// succeeded.
func (h *Remote) Keys() *KeySet { return h.r.keys.Load() }

// Refresh asks for a fetch ahead of schedule (a token names a key the
// cached set lacks: the issuer may have rotated its keys). It never
// blocks, and fetches at most once per few seconds.
func (h *Remote) Refresh() {
	now := time.Now().UnixNano()
	last := h.r.lastKick.Load()
	if now-last < int64(minKickInterval) || !h.r.lastKick.CompareAndSwap(last, now) {
		return
	}
	select {
	case h.r.kick <- struct{}{}:
	default:
	}
}

// get returns a handle on the JWKS at uri, starting its fetcher if no
// filter names it yet. owner is the filter the handle belongs to: once
// it is garbage, the handle is released, and an entry no filter holds
// stops fetching.
func (c *Cache) get(owner *Filter, uri string, cacheDuration, timeout, failedRefetch time.Duration) *Remote {
	k := remoteKey{uri: uri, cacheDuration: cacheDuration, timeout: timeout, failedRefetch: failedRefetch}
	if k.cacheDuration <= 0 {
		k.cacheDuration = DefaultCacheDuration
	}
	if k.timeout <= 0 {
		k.timeout = DefaultFetchTimeout
	}
	if k.failedRefetch <= 0 {
		k.failedRefetch = DefaultFailedRefetch
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.entries[k]
	if r == nil {
		r = &remote{key: k, kick: make(chan struct{}, 1), stop: make(chan struct{})}
		if !c.closed {
			c.entries[k] = r
			c.wg.Add(1)
			go c.run(r)
		}
	}
	r.refs++
	runtime.AddCleanup(owner, c.release, r)
	return &Remote{r: r}
}

func (c *Cache) release(r *remote) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.refs--
	if r.refs == 0 && c.entries[r.key] == r {
		delete(c.entries, r.key)
		close(r.stop)
	}
}

// Close stops every fetcher and waits for them.
func (c *Cache) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		for k, r := range c.entries {
			close(r.stop)
			delete(c.entries, k)
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// run fetches r now, then every cache duration (or sooner when kicked),
// retrying failures with backoff, until r is stopped.
func (c *Cache) run(r *remote) {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := r.key.failedRefetch
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		case <-r.kick:
			t.Stop()
		}
		err := c.fetch(ctx, r)
		next := r.key.cacheDuration
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			level := slog.LevelWarn
			if r.keys.Load() != nil {
				level = slog.LevelInfo // the last keys still serve
			}
			c.log.Log(ctx, level, "remote JWKS fetch failed; requests with its tokens fail until one succeeds", "uri", r.key.uri, "retry_in", backoff, "err", err)
			next = backoff
			backoff = min(2*backoff, maxFailedRefetch)
		} else {
			backoff = r.key.failedRefetch
		}
		t.Reset(next)
	}
}

func (c *Cache) fetch(ctx context.Context, r *remote) error {
	ctx, cancel := context.WithTimeout(ctx, r.key.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.key.uri, nil)
	if err != nil {
		return fmt.Errorf("jwksUri %q: %w", r.key.uri, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d, want 200", r.key.uri, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: reading the body: %w", r.key.uri, err)
	}
	ks, _, err := ParseJWKS(b)
	if ks == nil {
		// A bad answer does not throw away good keys fetched before.
		return fmt.Errorf("GET %s: %w", r.key.uri, err)
	}
	if err != nil {
		c.log.Info("remote JWKS has keys the proxy cannot use", "uri", r.key.uri, "err", err)
	}
	r.keys.Store(ks)
	r.fetched.Store(time.Now().UnixNano())
	return nil
}
