package sidecar

import "github.com/trellismesh/trellis/internal/proxy/certs"

// WorkloadIdentity is the proxy's certificate source (nil without one),
// for the admin /certs page.
func (p *Proxy) WorkloadIdentity() certs.Source { return p.opts.Identity }
