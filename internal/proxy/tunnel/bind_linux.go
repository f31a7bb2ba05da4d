package tunnel

import "syscall"

// ipBindAddressNoPort is Linux's IP_BIND_ADDRESS_NO_PORT (absent from
// package syscall).
const ipBindAddressNoPort = 24

// bindNoPort lets a dial bound to a source IP (the pod IP) pick its port
// at connect time, by the full 4-tuple. Without it bind reserves the port
// for every destination, so a busy proxy runs out of ephemeral ports (and
// TIME_WAIT holds them) long before it would otherwise.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		// Best effort: kernels before 4.2 refuse it and bind as before.
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
}
