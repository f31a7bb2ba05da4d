package dnsproxy

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// Nameserver returns the first nameserver of the resolv.conf at path (the
// pod's /etc/resolv.conf as the proxy sees it at start), on port 53: where
// the proxy forwards what its table cannot answer, as Istio's DNS proxy does.
func Nameserver(path string) (netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer f.Close()
	ns, err := parseNameserver(f)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s: %w", path, err)
	}
	return ns, nil
}

func parseNameserver(r io.Reader) (netip.AddrPort, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		// A link-local IPv6 nameserver may carry a zone (fe80::1%eth0).
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	if err := sc.Err(); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPort{}, fmt.Errorf("no nameserver line")
}
