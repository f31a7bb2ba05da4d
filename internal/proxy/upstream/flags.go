package upstream

import "strings"

// Flags are Envoy's response flags: why a request did not get an ordinary
// upstream response. They use Envoy's short codes so that access logs and
// the response_flags metric label read the same as Istio's.
type Flags uint32

// Response flags. Only the ones the proxy can raise are defined; NR and DC
// belong to the router and listener but live here so that one type carries
// every flag of a request.
const (
	NoHealthyUpstream               Flags = 1 << iota // UH
	UpstreamConnectionFailure                         // UF
	UpstreamOverflow                                  // UO
	NoRouteFound                                      // NR
	UpstreamRetryLimitExceeded                        // URX
	UpstreamConnectionTermination                     // UC
	UpstreamRequestTimeout                            // UT
	DownstreamConnectionTermination                   // DC
	DelayInjected                                     // DI
	FaultInjected                                     // FI
)

// flagCodes is in Envoy's order of its response-flag table, which is the
// order Envoy prints several flags in.
var flagCodes = [...]struct {
	f    Flags
	code string
}{
	{NoHealthyUpstream, "UH"},
	{UpstreamConnectionFailure, "UF"},
	{UpstreamOverflow, "UO"},
	{NoRouteFound, "NR"},
	{DelayInjected, "DI"},
	{FaultInjected, "FI"},
	{UpstreamRetryLimitExceeded, "URX"},
	{UpstreamConnectionTermination, "UC"},
	{UpstreamRequestTimeout, "UT"},
	{DownstreamConnectionTermination, "DC"},
}

// String returns the flags as Envoy's %RESPONSE_FLAGS% does: short codes
// joined by commas, or "-" when there are none. A single flag costs no
// allocation, since access logs format one on nearly every failed request.
func (f Flags) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for _, c := range flagCodes {
		if f&c.f == 0 {
			continue
		}
		if f == c.f {
			return c.code
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.code)
	}
	return b.String()
}
