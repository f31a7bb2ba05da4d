//go:build !linux

package tunnel

import "syscall"

func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }
