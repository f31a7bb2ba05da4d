// Package xxhash is xxHash64 (XXH64), the hash Envoy's HashUtil::xxHash64
// uses, so that the proxy's route hash keys and ring/Maglev host positions
// equal Envoy's. Written out rather than imported to keep the proxy's
// dependencies to what it must have; it is short, allocation-free for
// strings and byte slices, and tested against the reference vectors.
package xxhash
