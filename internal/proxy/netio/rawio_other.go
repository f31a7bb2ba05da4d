//go:build !linux

package netio

import (
	"crypto/tls"
	"errors"
	"net"
)

// RawIO is raw system-call I/O on Linux (rawio_linux.go); elsewhere
// NewRawIO returns nil and callers use the connection's own Read and
// Write.
type RawIO struct{}

// NewRawIO returns nil: raw I/O is Linux's.
func NewRawIO(net.Conn) *RawIO { return nil }

// Read is never called: NewRawIO returns nil.
func (*RawIO) Read([]byte) (int, error) { panic("netio: RawIO outside Linux") }

// Write is never called: NewRawIO returns nil.
func (*RawIO) Write([]byte) (int, error) { panic("netio: RawIO outside Linux") }

// ErrWouldBlock is never returned outside Linux.
var ErrWouldBlock = errors.New("netio: nothing to read yet")

// Serve is never called: NewRawIO returns nil.
func (*RawIO) Serve(func() bool) error { panic("netio: RawIO outside Linux") }

// WriteAwait is never called: NewRawIO returns nil.
func (*RawIO) WriteAwait([]byte) (int, error) { panic("netio: RawIO outside Linux") }

// ForTLS returns nc: raw I/O is Linux's.
func ForTLS(nc net.Conn) net.Conn { return nc }

// WrapTLS returns tc: raw I/O is Linux's.
func WrapTLS(tc *tls.Conn) net.Conn { return tc }
