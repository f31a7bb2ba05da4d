//go:build !linux

package sniff

import "net"

// RawIO is raw system-call I/O on Linux (rawio_linux.go); elsewhere
// NewRawIO returns nil and callers use the connection's own Read and
// Write.
type RawIO struct{}

// NewRawIO returns nil: raw I/O is Linux's.
func NewRawIO(net.Conn) *RawIO { return nil }

// Read is never called: NewRawIO returns nil.
func (*RawIO) Read([]byte) (int, error) { panic("sniff: RawIO outside Linux") }

// Write is never called: NewRawIO returns nil.
func (*RawIO) Write([]byte) (int, error) { panic("sniff: RawIO outside Linux") }
