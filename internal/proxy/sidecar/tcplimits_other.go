//go:build !linux

package sidecar

import (
	"syscall"
	"time"
)

// kernelIdle says whether socketIdle can ask the kernel.
const kernelIdle = false

// socketIdle cannot ask the kernel here, so connections note their
// traffic themselves (activeConn).
func socketIdle(syscall.Conn) time.Duration { return 0 }
