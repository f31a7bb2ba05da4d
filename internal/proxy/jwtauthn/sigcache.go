package jwtauthn

import (
	"crypto/sha256"
	"sync"
)

// maxSigCache bounds the signatures a provider remembers (about 80
// bytes each).
const maxSigCache = 4096

// sigCache remembers tokens whose signature verified with a key set, so
// that a client sending the same token on every request costs one
// public-key operation, not one per request. Only the signature is
// remembered: format, issuer, time and audience are checked every time.
// An entry counts only for the key set it verified with, so new keys
// (a rotation) verify afresh. When full it starts over, which is cheap
// and keeps no per-entry bookkeeping.
type sigCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]*KeySet
}

func (c *sigCache) verified(keys *KeySet, tok string) bool {
	h := sha256.Sum256([]byte(tok))
	c.mu.Lock()
	ks, ok := c.m[h]
	c.mu.Unlock()
	return ok && ks == keys
}

func (c *sigCache) add(keys *KeySet, tok string) {
	h := sha256.Sum256([]byte(tok))
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxSigCache {
		c.m = make(map[[sha256.Size]byte]*KeySet)
	}
	c.m[h] = keys
	c.mu.Unlock()
}
