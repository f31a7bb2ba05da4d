package validate

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trellismesh/trellis/internal/config/field"
)

// Checks shared by the Istio kinds. They follow what `istioctl validate`
// (istio/pkg/config/validation) rejects, and reject a few things Istio only
// warns about when the result could never do what the user meant.

func setOf(items ...string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, it := range items {
		m[it] = true
	}
	return m
}

// sortedKeys gives map keys in order so that errors come out the same way
// on every run.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

// checkDuration applies Istio's rule for timeouts and intervals: Envoy
// takes them in milliseconds, so anything under 1ms (including 0) would be
// read as "unset" or "disabled", and sub-millisecond parts would be lost.
func checkDuration(errs *field.List, p *field.Path, d *durationpb.Duration) {
	if d == nil {
		return
	}
	v := d.AsDuration()
	if v < time.Millisecond {
		errs.Add(p, "must be at least 1ms, got %s", v)
		return
	}
	if v%time.Millisecond != 0 {
		errs.Add(p, "must be a whole number of milliseconds, got %s", v)
	}
}

// checkRequiredDuration is checkDuration for fields that must be set.
func checkRequiredDuration(errs *field.List, p *field.Path, d *durationpb.Duration) {
	if d == nil {
		errs.Append(field.Required(p))
		return
	}
	checkDuration(errs, p, d)
}

func checkPort(errs *field.List, p *field.Path, n uint32) {
	if n < 1 || n > 65535 {
		errs.Add(p, "port %d must be in 1..65535", n)
	}
}

func checkPercent(errs *field.List, p *field.Path, v int32) {
	if v < 0 || v > 100 {
		errs.Add(p, "%d is not a percentage: must be in 0..100", v)
	}
}

func checkPercentValue(errs *field.List, p *field.Path, v float64) {
	if v < 0 || v > 100 {
		errs.Add(p, "%g is not a percentage: must be in 0..100", v)
	}
}

// maxRegexLen mirrors Istio: Envoy limits the RE2 program size, which Go
// cannot measure, and length is a safe lower bound of it.
const maxRegexLen = 1024

func checkRegex(errs *field.List, p *field.Path, re string) {
	if re == "" {
		errs.Add(p, "regex must not be empty")
		return
	}
	if len(re) > maxRegexLen {
		errs.Add(p, "regex is %d characters long: at most %d are allowed", len(re), maxRegexLen)
		return
	}
	if _, err := regexp.Compile(re); err != nil {
		errs.Add(p, "invalid RE2 regex %q: %v (see https://github.com/google/re2/wiki/Syntax)", re, err)
	}
}

// checkStringMatchParts checks a StringMatch given which member is set.
// emptyPrefixOK is true for uri, where Envoy accepts prefix "" (match all).
func checkStringMatchParts(errs *field.List, p *field.Path, kind, value string, emptyPrefixOK bool) {
	switch kind {
	case "":
		errs.Add(p, "empty match: set one of exact, prefix or regex")
	case "exact":
	case "prefix":
		if value == "" && !emptyPrefixOK {
			errs.Add(p.Child("prefix"), "must not be empty")
		}
	case "regex":
		checkRegex(errs, p.Child("regex"), value)
	}
}

// dns1123Label is Kubernetes' label rule, which Istio applies to namespaces,
// port names, subset names and each part of a host name.
func isDNS1123Label(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }

// checkHost checks a host name as written in hosts lists: a DNS name,
// optionally starting with "*." (a wildcard may only stand for whole
// leading labels). A short name such as "reviews" is fine; it resolves in
// the object's namespace. allowStar allows "*" alone.
func checkHost(errs *field.List, p *field.Path, h string, allowStar bool) {
	if msg := hostProblem(h, allowStar); msg != "" {
		errs.Add(p, "%s", msg)
	}
}

func hostProblem(h string, allowStar bool) string {
	switch {
	case h == "":
		return "host must not be empty"
	case h == "*":
		if allowStar {
			return ""
		}
		return `"*" is not allowed here: name a host, or a wildcard such as "*.example.com"`
	case len(h) > 255:
		return fmt.Sprintf("host %q is too long (at most 255 characters)", h)
	case strings.HasPrefix(h, "spiffe://") || strings.Contains(h, "://"):
		return fmt.Sprintf("host %q must be a DNS name, not a URL", h)
	}
	rest := strings.TrimPrefix(h, "*.")
	if strings.Contains(rest, "*") {
		return fmt.Sprintf("invalid host %q: a wildcard is only allowed as a leading \"*.\", as in \"*.example.com\"", h)
	}
	rest = strings.TrimSuffix(rest, ".")
	labels := strings.Split(rest, ".")
	for _, l := range labels {
		if !isDNS1123Label(l) {
			return fmt.Sprintf("invalid host %q: %q is not a valid DNS label (lowercase letters, digits and '-', at most 63)", h, l)
		}
	}
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		if _, ipErr := netip.ParseAddr(h); ipErr == nil {
			return fmt.Sprintf("host %q is an IP address: use a host name", h)
		}
		return fmt.Sprintf("invalid host %q: the top-level domain cannot be all digits", h)
	}
	return ""
}

// isFQDN reports whether h is a plain DNS name with no wildcard.
func isFQDN(h string) bool {
	return !strings.Contains(h, "*") && hostProblem(h, false) == ""
}

func checkIP(errs *field.List, p *field.Path, s string) {
	if _, err := netip.ParseAddr(s); err != nil {
		errs.Add(p, "%q is not a valid IP address", s)
	}
}

// checkIPOrCIDR accepts "10.1.2.3", "10.0.0.0/16" or IPv6 forms.
func checkIPOrCIDR(errs *field.List, p *field.Path, s string) {
	if strings.Contains(s, "/") {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			errs.Add(p, "%q is not a valid CIDR block (such as 10.0.0.0/16)", s)
			return
		}
		if pfx.Masked() != pfx {
			errs.Add(p, "CIDR %q has host bits set: write %s", s, pfx.Masked())
		}
		return
	}
	if _, err := netip.ParseAddr(s); err != nil {
		errs.Add(p, "%q is not a valid IP address or CIDR block", s)
	}
}

// checkLabels checks a label map (keys and values as in Kubernetes).
func checkLabels(errs *field.List, p *field.Path, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		kp := p.Key(k)
		if k == "" {
			errs.Add(p, "label keys must not be empty")
			continue
		}
		if strings.Contains(k, "*") || strings.Contains(v, "*") {
			errs.Add(kp, "wildcards are not supported in labels: %s=%s", k, v)
			continue
		}
		for _, msg := range validation.IsQualifiedName(k) {
			errs.Add(kp, "invalid label key %q: %s", k, msg)
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs.Add(kp, "invalid label value %q: %s", v, msg)
		}
	}
}

// checkWorkloadSelector checks the security/telemetry selector. Istio only
// warns about an empty one; it is rejected here because it silently selects
// every workload in the namespace, which is what leaving it out means.
func checkWorkloadSelector(errs *field.List, p *field.Path, s *typev1beta1.WorkloadSelector) {
	if s == nil {
		return
	}
	if len(s.MatchLabels) == 0 {
		errs.Add(p.Child("matchLabels"), "an empty selector selects every workload in the namespace: add labels, or remove the selector")
		return
	}
	checkLabels(errs, p.Child("matchLabels"), s.MatchLabels)
}

// checkTargetRefs checks the policy attachment fields shared by
// AuthorizationPolicy, RequestAuthentication and Telemetry.
func checkTargetRefs(errs *field.List, spec *field.Path, sel *typev1beta1.WorkloadSelector, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference) {
	set := 0
	if sel != nil {
		set++
	}
	if ref != nil {
		set++
	}
	if len(refs) > 0 {
		set++
	}
	if set > 1 {
		errs.Add(spec, "only one of selector, targetRef and targetRefs may be set")
	}
	checkWorkloadSelector(errs, spec.Child("selector"), sel)
	if ref != nil {
		checkTargetRef(errs, spec.Child("targetRef"), ref)
	}
	for i, r := range refs {
		checkTargetRef(errs, spec.Child("targetRefs").Index(i), r)
	}
}

// allowedTargetKinds are the kinds Istio lets a policy attach to.
var allowedTargetKinds = map[string]bool{
	"/Service":                               true,
	"networking.istio.io/ServiceEntry":       true,
	"gateway.networking.k8s.io/Gateway":      true,
	"gateway.networking.k8s.io/GatewayClass": true,
}

func checkTargetRef(errs *field.List, p *field.Path, r *typev1beta1.PolicyTargetReference) {
	if r == nil {
		errs.Append(field.Required(p))
		return
	}
	if r.Name == "" {
		errs.Append(field.Required(p.Child("name")))
	}
	if r.Namespace != "" {
		errs.Add(p.Child("namespace"), "cross-namespace references are not supported: remove namespace and put the policy in the target's namespace")
	}
	group := r.Group
	if group == "core" {
		group = ""
	}
	if !allowedTargetKinds[group+"/"+r.Kind] {
		errs.Add(p.Child("kind"), "cannot target %s (group %q): use a Service, ServiceEntry (networking.istio.io), Gateway or GatewayClass (gateway.networking.k8s.io)", r.Kind, r.Group)
	}
}

func checkNamespaceName(errs *field.List, p *field.Path, ns string) {
	if ns == "" {
		errs.Add(p, "namespace must not be empty")
		return
	}
	if !isDNS1123Label(ns) {
		errs.Add(p, "%q is not a valid namespace name (lowercase letters, digits and '-', at most 63)", ns)
	}
}

// checkExportTo follows Istio's visibility rules: ".", "*" or namespace
// names, no duplicates, "*" alone; "~" (no one) only for ServiceEntry.
func checkExportTo(errs *field.List, p *field.Path, namespace string, exportTo []string, serviceEntry bool) {
	seen := map[string]int{}
	for i, e := range exportTo {
		ip := p.Index(i)
		key := e
		if e == "." {
			key = namespace
		}
		switch {
		case e == "." || e == "*":
		case e == "~":
			if !serviceEntry {
				errs.Add(ip, `"~" (visible to no one) is only allowed for ServiceEntry`)
			}
		default:
			if !isDNS1123Label(e) {
				errs.Add(ip, `%q is not ".", "*" or a namespace name`, e)
			}
		}
		if j, dup := seen[key]; dup {
			errs.Add(ip, "duplicate: exportTo[%d] already names namespace %q", j, key)
			continue
		}
		seen[key] = i
	}
	if len(exportTo) > 1 {
		for i, e := range exportTo {
			if e == "*" || e == "~" {
				errs.Add(p.Index(i), "%q cannot be combined with other entries", e)
			}
		}
	}
}

// protocols Istio knows for ports; compared case-insensitively.
var protocols = map[string]bool{
	"tcp": true, "udp": true, "grpc": true, "grpc-web": true, "http": true,
	"http_proxy": true, "http2": true, "https": true, "tls": true,
	"mongo": true, "redis": true, "mysql": true,
}

const protocolList = "HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, REDIS, MYSQL, HTTP_PROXY"

func checkProtocol(errs *field.List, p *field.Path, proto string, required bool) {
	if proto == "" {
		if required {
			errs.Add(p, "required: one of %s", protocolList)
		}
		return
	}
	if !protocols[strings.ToLower(proto)] {
		errs.Add(p, "unknown protocol %q: use one of %s", proto, protocolList)
	}
}

func isHTTPProtocol(proto string) bool {
	switch strings.ToLower(proto) {
	case "http", "http2", "http_proxy", "grpc", "grpc-web":
		return true
	}
	return false
}

func isTLSProtocol(proto string) bool {
	switch strings.ToLower(proto) {
	case "https", "tls":
		return true
	}
	return false
}

func checkPortName(errs *field.List, p *field.Path, name string) {
	if !isDNS1123Label(name) {
		errs.Add(p, "invalid port name %q: use lowercase letters, digits and '-' (at most 63)", name)
	}
}

// headerNameRE is RFC 7230's token.
var headerNameRE = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~A-Za-z0-9]+$")

func checkHeaderName(errs *field.List, p *field.Path, name string) {
	if name == "" {
		errs.Add(p, "header name must not be empty")
		return
	}
	if !headerNameRE.MatchString(name) {
		errs.Add(p, "%q is not a valid HTTP header name", name)
	}
}

// checkHeaderValue applies Envoy's rules for configured header values: no
// control characters, and '%' only as "%%" or around a %VARIABLE%.
func checkHeaderValue(errs *field.List, p *field.Path, v string) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			errs.Add(p, "header value %q contains a control character", v)
			return
		}
	}
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			i++
			continue
		}
		end := strings.IndexByte(v[i+1:], '%')
		if end <= 0 {
			errs.Add(p, "header value %q has an unescaped %%: write %%%% for a literal %%, or %%VARIABLE%%", v)
			return
		}
		i += end + 1
	}
}

// principalProblem checks an authorization principal, which is a SPIFFE ID
// without its scheme: <trust-domain>/ns/<namespace>/sa/<service-account>,
// or a value with one "*" at its start or end.
func principalProblem(v string) string {
	if v == "" {
		return "must not be empty"
	}
	if rest, ok := strings.CutPrefix(v, "spiffe://"); ok {
		return fmt.Sprintf("principal %q must not start with spiffe://: write %q", v, rest)
	}
	if msg := wildcardProblem(v); msg != "" {
		return msg
	}
	if strings.Contains(v, "*") {
		return ""
	}
	parts := strings.Split(v, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" || parts[0] == "" || parts[2] == "" || parts[4] == "" {
		return fmt.Sprintf("principal %q must look like <trust-domain>/ns/<namespace>/sa/<service-account>, e.g. cluster.local/ns/default/sa/sleep", v)
	}
	if !isDNS1123Label(parts[2]) {
		return fmt.Sprintf("principal %q: %q is not a valid namespace name", v, parts[2])
	}
	return ""
}

// wildcardProblem allows one "*" at the start or end of a value (Istio's
// prefix/suffix match), or "*" alone.
func wildcardProblem(v string) string {
	n := strings.Count(v, "*")
	if n == 0 || v == "*" {
		return ""
	}
	if n > 1 {
		return fmt.Sprintf("%q has more than one \"*\": only one, at the start or the end, is allowed", v)
	}
	if !strings.HasPrefix(v, "*") && !strings.HasSuffix(v, "*") {
		return fmt.Sprintf("%q has \"*\" in the middle: it is only allowed at the start or the end", v)
	}
	return ""
}

// Traffic policy checks, shared by DestinationRule, Sidecar and MeshConfig.

func checkTrafficPolicy(errs *field.List, p *field.Path, namespace string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	if tp.OutlierDetection == nil && tp.ConnectionPool == nil && tp.LoadBalancer == nil && tp.Tls == nil &&
		tp.PortLevelSettings == nil && tp.Tunnel == nil && tp.ProxyProtocol == nil && tp.RetryBudget == nil {
		errs.Add(p, "empty trafficPolicy: set at least one field, or remove it")
		return
	}
	if tp.Tunnel != nil && tp.ProxyProtocol != nil {
		errs.Add(p, "set only one of tunnel and proxyProtocol")
	}
	checkOutlierDetection(errs, p.Child("outlierDetection"), tp.OutlierDetection)
	checkConnectionPool(errs, p.Child("connectionPool"), tp.ConnectionPool)
	checkLoadBalancer(errs, p.Child("loadBalancer"), tp.LoadBalancer)
	checkClientTLS(errs, p.Child("tls"), namespace, tp.Tls)
	ports := map[uint32]int{}
	for i, pl := range tp.PortLevelSettings {
		pp := p.Child("portLevelSettings").Index(i)
		if pl == nil {
			errs.Add(pp, "must not be null")
			continue
		}
		if pl.Port == nil {
			errs.Append(field.Required(pp.Child("port")))
		} else {
			checkPort(errs, pp.Child("port", "number"), pl.Port.Number)
			if j, dup := ports[pl.Port.Number]; dup {
				errs.Add(pp.Child("port", "number"), "port %d already has settings in portLevelSettings[%d]", pl.Port.Number, j)
			} else {
				ports[pl.Port.Number] = i
			}
		}
		if pl.OutlierDetection == nil && pl.ConnectionPool == nil && pl.LoadBalancer == nil && pl.Tls == nil {
			errs.Add(pp, "set at least one of loadBalancer, connectionPool, outlierDetection and tls")
			continue
		}
		checkOutlierDetection(errs, pp.Child("outlierDetection"), pl.OutlierDetection)
		checkConnectionPool(errs, pp.Child("connectionPool"), pl.ConnectionPool)
		checkLoadBalancer(errs, pp.Child("loadBalancer"), pl.LoadBalancer)
		checkClientTLS(errs, pp.Child("tls"), namespace, pl.Tls)
	}
	if t := tp.Tunnel; t != nil {
		tp := p.Child("tunnel")
		if t.Protocol != "" && t.Protocol != "CONNECT" && t.Protocol != "POST" {
			errs.Add(tp.Child("protocol"), `must be "CONNECT" or "POST", not %q`, t.Protocol)
		}
		if _, err := netip.ParseAddr(t.TargetHost); err != nil && !isFQDN(t.TargetHost) {
			errs.Add(tp.Child("targetHost"), "%q is neither a host name nor an IP address", t.TargetHost)
		}
		checkPort(errs, tp.Child("targetPort"), t.TargetPort)
	}
	if rb := tp.RetryBudget; rb != nil {
		rp := p.Child("retryBudget")
		if rb.Percent != nil {
			checkPercentValue(errs, rp.Child("percent"), rb.Percent.GetValue())
		}
		checkDuration(errs, rp.Child("budgetInterval"), rb.BudgetInterval)
	}
}

func checkOutlierDetection(errs *field.List, p *field.Path, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	checkDuration(errs, p.Child("baseEjectionTime"), od.BaseEjectionTime)
	checkDuration(errs, p.Child("interval"), od.Interval)
	if !od.SplitExternalLocalOriginErrors && od.ConsecutiveLocalOriginFailures.GetValue() > 0 {
		errs.Add(p.Child("consecutiveLocalOriginFailures"), "only counts when splitExternalLocalOriginErrors is true: set it")
	}
	checkPercent(errs, p.Child("maxEjectionPercent"), od.MaxEjectionPercent)
	checkPercent(errs, p.Child("minHealthPercent"), od.MinHealthPercent)
	for i, c := range od.OutlierDetectionHttpErrorCodes {
		if c < 100 || c > 599 {
			errs.Add(p.Child("outlierDetectionHttpErrorCodes").Index(i), "%d is not an HTTP status code", c)
		}
	}
}

func checkConnectionPool(errs *field.List, p *field.Path, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.Http == nil && cp.Tcp == nil {
		errs.Add(p, "empty connectionPool: set tcp or http, or remove it")
		return
	}
	if h := cp.Http; h != nil {
		hp := p.Child("http")
		for _, f := range []struct {
			v    int32
			name string
		}{
			{h.Http1MaxPendingRequests, "http1MaxPendingRequests"},
			{h.Http2MaxRequests, "http2MaxRequests"},
			{h.MaxRequestsPerConnection, "maxRequestsPerConnection"},
			{h.MaxRetries, "maxRetries"},
			{h.MaxConcurrentStreams, "maxConcurrentStreams"},
		} {
			if f.v < 0 {
				errs.Add(hp.Child(f.name), "must be >= 0")
			}
		}
		checkDuration(errs, hp.Child("idleTimeout"), h.IdleTimeout)
		if h.H2UpgradePolicy == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && h.UseClientProtocol {
			errs.Add(hp.Child("useClientProtocol"), "cannot be true with h2UpgradePolicy UPGRADE: keep one")
		}
		if ka := h.Http2KeepAlive; ka != nil {
			kp := hp.Child("http2KeepAlive")
			checkRequiredDuration(errs, kp.Child("interval"), ka.Interval)
			checkRequiredDuration(errs, kp.Child("timeout"), ka.Timeout)
		}
	}
	if t := cp.Tcp; t != nil {
		tp := p.Child("tcp")
		if t.MaxConnections < 0 {
			errs.Add(tp.Child("maxConnections"), "must be >= 0")
		}
		checkDuration(errs, tp.Child("connectTimeout"), t.ConnectTimeout)
		checkDuration(errs, tp.Child("maxConnectionDuration"), t.MaxConnectionDuration)
		// An idle timeout of 0s disables it.
		if t.IdleTimeout != nil && t.IdleTimeout.AsDuration() != 0 {
			checkDuration(errs, tp.Child("idleTimeout"), t.IdleTimeout)
		}
		if ka := t.TcpKeepalive; ka != nil {
			checkDuration(errs, tp.Child("tcpKeepalive", "time"), ka.Time)
			checkDuration(errs, tp.Child("tcpKeepalive", "interval"), ka.Interval)
		}
	}
}

// maglevMaxTableSize is Envoy's limit (a prime just above 5M).
const maglevMaxTableSize = 5000011

func checkLoadBalancer(errs *field.List, p *field.Path, lb *networking.LoadBalancerSettings) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		cp := p.Child("consistentHash")
		switch hk := ch.HashKey.(type) {
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
			kp := cp.Child("httpCookie")
			if hk.HttpCookie == nil || hk.HttpCookie.Name == "" {
				errs.Append(field.Required(kp.Child("name")))
			}
			seen := map[string]bool{}
			for i, a := range hk.HttpCookie.GetAttributes() {
				ap := kp.Child("attributes").Index(i).Child("name")
				if a.GetName() == "" {
					errs.Append(field.Required(ap))
				} else if seen[a.GetName()] {
					errs.Add(ap, "duplicate cookie attribute %q", a.GetName())
				}
				seen[a.GetName()] = true
			}
			if hk.HttpCookie != nil && hk.HttpCookie.Ttl != nil && hk.HttpCookie.Ttl.AsDuration() != 0 {
				checkDuration(errs, kp.Child("ttl"), hk.HttpCookie.Ttl)
			}
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
			checkHeaderName(errs, cp.Child("httpHeaderName"), hk.HttpHeaderName)
		case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
			if hk.HttpQueryParameterName == "" {
				errs.Add(cp.Child("httpQueryParameterName"), "must not be empty")
			}
		case nil:
			errs.Add(cp, "set one hash key: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
		}
		//lint:ignore SA1019 users still write the deprecated field; reject the conflict
		if ch.MinimumRingSize != 0 && ch.HashAlgorithm != nil {
			errs.Add(cp.Child("minimumRingSize"), "cannot be combined with ringHash or maglev: move it to ringHash.minimumRingSize")
		}
		if ml := ch.GetMaglev(); ml != nil {
			tp := cp.Child("maglev", "tableSize")
			switch {
			case ml.TableSize == 0:
				errs.Append(field.Required(tp))
			case ml.TableSize >= maglevMaxTableSize:
				errs.Add(tp, "must be less than %d", maglevMaxTableSize)
			case !isPrime(ml.TableSize):
				errs.Add(tp, "%d is not prime: Maglev needs a prime table size, such as 65537", ml.TableSize)
			}
		}
	}
	if lb.LocalityLbSetting != nil && lb.ZoneAwareLbSetting != nil {
		errs.Add(p, "set only one of localityLbSetting and zoneAwareLbSetting")
	}
	checkLocalityLB(errs, p.Child("localityLbSetting"), lb.LocalityLbSetting)
	if za := lb.ZoneAwareLbSetting; za != nil {
		zp := p.Child("zoneAwareLbSetting")
		for i, l := range za.FailoverPriority {
			if isTopologyLabel(l) {
				errs.Add(zp.Child("failoverPriority").Index(i), "%q is handled automatically by zone-aware load balancing: remove it", l)
			}
		}
		for i, f := range za.Failover {
			checkFailover(errs, zp.Child("failover").Index(i), f.GetFrom(), f.GetTo())
		}
	}
	//lint:ignore SA1019 users still write the deprecated field
	checkDuration(errs, p.Child("warmupDurationSecs"), lb.WarmupDurationSecs)
	if w := lb.Warmup; w != nil {
		wp := p.Child("warmup")
		checkRequiredDuration(errs, wp.Child("duration"), w.Duration)
		if w.MinimumPercent != nil {
			checkPercentValue(errs, wp.Child("minimumPercent"), w.MinimumPercent.GetValue())
		}
		if w.Aggression != nil && w.Aggression.GetValue() <= 0 {
			errs.Add(wp.Child("aggression"), "must be > 0")
		}
	}
}

func isTopologyLabel(l string) bool {
	switch l {
	case "topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone":
		return true
	}
	return false
}

func checkFailover(errs *field.List, p *field.Path, from, to string) {
	if from == to {
		errs.Add(p, "from and to must be different regions")
	}
	if strings.Contains(from, "/") || strings.Contains(to, "/") {
		errs.Add(p, "failover names regions only (no \"/\")")
	}
	if strings.Contains(from, "*") || strings.Contains(to, "*") {
		errs.Add(p, "failover regions cannot contain \"*\"")
	}
}

func checkLocalityLB(errs *field.List, p *field.Path, l *networking.LocalityLoadBalancerSetting) {
	if l == nil {
		return
	}
	if len(l.Distribute) > 0 && len(l.Failover) > 0 {
		errs.Add(p, "set only one of distribute and failover")
	}
	if len(l.Failover) > 0 {
		for i, lbl := range l.FailoverPriority {
			if isTopologyLabel(lbl) {
				errs.Add(p.Child("failoverPriority").Index(i), "cannot use topology label %q together with failover", lbl)
			}
		}
	}
	for i, d := range l.Distribute {
		dp := p.Child("distribute").Index(i)
		checkLocality(errs, dp.Child("from"), d.GetFrom())
		// The first entry whose from matches the proxy applies, so one
		// covered by an earlier entry never does.
		for j := range i {
			if prev := l.Distribute[j].GetFrom(); localityCovers(prev, d.GetFrom()) {
				errs.Add(dp.Child("from"), "locality %q is covered by distribute[%d].from %q, so this entry never applies: list specific localities first", d.GetFrom(), j, prev)
				break
			}
		}
		var total uint64
		keys := sortedKeys(d.GetTo())
		for ki, k := range keys {
			w := d.To[k]
			checkLocality(errs, dp.Child("to").Key(k), k)
			if w < 1 || w > 100 {
				errs.Add(dp.Child("to").Key(k), "weight %d must be in 1..100", w)
			}
			total += uint64(w)
			// to is a map: an endpoint under two keys has no defined weight.
			for _, prev := range keys[:ki] {
				if localityCovers(prev, k) || localityCovers(k, prev) {
					errs.Add(dp.Child("to").Key(k), "locality %q overlaps %q in the same map: the endpoints in both would get either weight", k, prev)
					break
				}
			}
		}
		if total != 100 {
			errs.Add(dp.Child("to"), "weights add up to %d: they must add up to 100", total)
		}
	}
	for i, f := range l.Failover {
		checkFailover(errs, p.Child("failover").Index(i), f.GetFrom(), f.GetTo())
	}
}

// checkLocality checks "region/zone/subzone", where a trailing "*" may
// stand for the rest.
func checkLocality(errs *field.List, p *field.Path, loc string) {
	if n := strings.Count(loc, "*"); n > 1 || (n == 1 && !strings.HasSuffix(loc, "*")) {
		errs.Add(p, "locality %q may only end with one \"*\"", loc)
	}
	for _, part := range strings.SplitN(loc, "/", 3) {
		if part == "" {
			errs.Add(p, "locality %q has an empty region, zone or subzone", loc)
			return
		}
	}
}

// localityCovers reports whether every locality that general matches is
// also matched by specific, as Istio matches them: a locality given to
// fewer levels, or ending in "*", matches everything below it.
func localityCovers(general, specific string) bool {
	g := strings.Split(strings.TrimSuffix(strings.TrimSuffix(general, "*"), "/"), "/")
	if general == "*" {
		g = nil
	}
	s := strings.Split(strings.TrimSuffix(strings.TrimSuffix(specific, "*"), "/"), "/")
	if specific == "*" {
		s = nil
	}
	if len(g) > len(s) {
		return false
	}
	for i := range g {
		if g[i] != s[i] {
			return false
		}
	}
	return true
}

// isPrime matches Envoy's check for the Maglev table size.
func isPrime(x uint64) bool {
	if x != 0 && x < 4 {
		return true
	}
	if x&1 == 0 {
		return false
	}
	for f := uint64(3); f*f <= x; f += 2 {
		if x%f == 0 {
			return false
		}
	}
	return true
}

func checkClientTLS(errs *field.List, p *field.Path, namespace string, t *networking.ClientTLSSettings) {
	if t == nil {
		return
	}
	if t.InsecureSkipVerify.GetValue() {
		switch t.Mode {
		case networking.ClientTLSSettings_SIMPLE:
			if t.CaCertificates != "" || t.CredentialName != "" || t.SubjectAltNames != nil {
				errs.Add(p.Child("insecureSkipVerify"), "skips verification, so caCertificates, credentialName and subjectAltNames cannot be set with it")
			}
		case networking.ClientTLSSettings_MUTUAL:
			if t.CaCertificates != "" || t.SubjectAltNames != nil {
				errs.Add(p.Child("insecureSkipVerify"), "skips verification, so caCertificates and subjectAltNames cannot be set with it")
			}
		}
	}
	if after, ok := strings.CutPrefix(t.CredentialName, "configmap://"); ok {
		ns, name, hasNS := strings.Cut(after, "/")
		if hasNS && ns != namespace {
			errs.Add(p.Child("credentialName"), "a configmap:// credential must be in this namespace (%s)", namespace)
		}
		if !hasNS {
			name = ns
		}
		if name == "" {
			errs.Add(p.Child("credentialName"), "configmap:// needs a ConfigMap name")
		}
	}
	if (t.Mode == networking.ClientTLSSettings_SIMPLE || t.Mode == networking.ClientTLSSettings_MUTUAL) && t.CredentialName != "" {
		if t.ClientCertificate != "" || t.CaCertificates != "" || t.PrivateKey != "" || t.CaCrl != "" {
			errs.Add(p.Child("credentialName"), "brings the certificates: remove clientCertificate, privateKey, caCertificates and caCrl")
		}
		return
	}
	if t.Mode == networking.ClientTLSSettings_MUTUAL {
		if t.ClientCertificate == "" {
			errs.Add(p.Child("clientCertificate"), "required for MUTUAL: set it with privateKey, or use credentialName")
		}
		if t.PrivateKey == "" {
			errs.Add(p.Child("privateKey"), "required for MUTUAL: set it with clientCertificate, or use credentialName")
		}
	}
}
