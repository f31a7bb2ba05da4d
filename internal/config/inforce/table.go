package inforce

import (
	"encoding/json"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

// The kinds, as config registers them.
var (
	VirtualService        = Kind{"networking.istio.io", "VirtualService"}
	DestinationRule       = Kind{"networking.istio.io", "DestinationRule"}
	ServiceEntry          = Kind{"networking.istio.io", "ServiceEntry"}
	WorkloadEntry         = Kind{"networking.istio.io", "WorkloadEntry"}
	Sidecar               = Kind{"networking.istio.io", "Sidecar"}
	IstioGateway          = Kind{"networking.istio.io", "Gateway"}
	PeerAuthentication    = Kind{"security.istio.io", "PeerAuthentication"}
	AuthorizationPolicy   = Kind{"security.istio.io", "AuthorizationPolicy"}
	RequestAuthentication = Kind{"security.istio.io", "RequestAuthentication"}
	Telemetry             = Kind{"telemetry.istio.io", "Telemetry"}
	TrafficSplit          = Kind{"split.smi-spec.io", "TrafficSplit"}
	HTTPRoute             = Kind{"gateway.networking.k8s.io", "HTTPRoute"}
	GRPCRoute             = Kind{"gateway.networking.k8s.io", "GRPCRoute"}
	GatewayAPIGateway     = Kind{"gateway.networking.k8s.io", "Gateway"}
	Namespace             = Kind{"", "Namespace"}
	Service               = Kind{"", "Service"}
	ServiceAccount        = Kind{"", "ServiceAccount"}
	ConfigMap             = Kind{"", "ConfigMap"}
	Pod                   = Kind{"", "Pod"}
	Deployment            = Kind{"apps", "Deployment"}
	EndpointSlice         = Kind{"discovery.k8s.io", "EndpointSlice"}
)

// Notes used by several rows.
const (
	retriesNote   = "retried by the client's sidecar as Envoy retries for Istio: attempts are retries after the first try, each bounded by perTryTimeout inside the route's timeout; retryOn takes Envoy's conditions (5xx, gateway-error, reset, reset-before-request, connect-failure, refused-stream, retriable-4xx, retriable-status-codes, retriable-headers with the caller's x-envoy-retriable-header-names, envoy-ratelimited; gRPC's cancelled, deadline-exceeded, internal, resource-exhausted, unavailable from a trailers-only answer) and HTTP status codes; a retry waits a jittered back-off (backoff, default 25ms, at most ten times it) and prefers a host not tried yet (retryIgnorePreviousHosts), except on a route that hashes; with retryRemoteLocalities it goes to the lowest priority level (under locality failover, the nearest locality) not tried yet that has a healthy host, picked by weight. A request whose body passes 64 KiB is not retried once sent (Envoy keeps 1 MiB). When the last try is still retriable the answer carries X-Trellis-Flags URX (attempts spent) or UO (no retry slot); a local reply says why in its body"
	tlsOrigNote   = "TLS origination for traffic to unknown destinations is not in force yet: the sidecar passes it through as it comes"
	gatewaysNote  = "Trellis runs no Istio ingress or egress gateways: only `mesh` (the sidecars) applies routes"
	outlierNote   = "passive health checking by the client's sidecar, as Envoy does it with istiod's translation: an endpoint that answers consecutive5xxErrors 5xx in a row (default 5; 0 turns it off) or consecutiveGatewayErrors 502/503/504 in a row (off unless set) is ejected, left out of load balancing, for baseEjectionTime (default 30s) times the number of its ejections in a row (at most 300s), and brought back by the check every interval (default 10s). Connections refused, reset or timed out count as 503s, or with splitExternalLocalOriginErrors against consecutiveLocalOriginFailures (default 5) alone; TCP services count their connect failures. At most maxEjectionPercent (default 10) of the endpoints are out at once, counted as Envoy does, (ejected+1)/endpoints, so the default ejects nothing in a service of fewer than 10 endpoints. While fewer than minHealthPercent of the endpoints are healthy (default 0: never) the sidecar balances over all of them, ejected or not. Counters: outlier_detection.* per cluster on the admin /stats page. Unlike Envoy: only the HTTP status counts, not a gRPC status (grpc-status UNAVAILABLE is not a 503), and a response cut short after its headers counts as its status; endpoints of PASSTHROUGH services are not ejected. Not for proxyless gRPC clients (grpc-go has no consecutive-error ejection)"
	localityNote  = "localityLbSetting is applied by the control plane for each client sidecar, as istiod does: the client's locality is its pod's (labels topology.kubernetes.io/region, topology.kubernetes.io/zone, topology.istio.io/subzone, or istio-locality; Istio reads the first two from the pod's node, Trellis has no nodes), and so is a pod endpoint's. With outlierDetection on the cluster (Istio's requirement: without it there is no failover), endpoints are put in priorities by how much of the client's region/zone/subzone they share, failover names the region that comes next, and failoverPriority orders by the labels listed (label=value compares with value; the topology labels follow the locality); the client's sidecar sends a priority its traffic while enough of its endpoints are healthy and not ejected (Envoy's 1.4 overprovisioning) and spills to the next as they fail. distribute gives each locality its weight for clients in its from locality (no outlier detection needed; localities it does not name get nothing), and the sidecar picks a locality by weight, then an endpoint in it. enabled: false turns it off; with no setting, Istio's default (enabled) applies. Not for proxyless gRPC clients"
	warmupNote    = "the client's sidecar ramps up an endpoint that joins the service, as Envoy's slow start for istiod: its weight is scaled by max(minimumPercent, (age/duration)^(1/aggression)) (defaults 10% and 1, linear) from when the sidecar first has it healthy until the duration ends; endpoints a sidecar starts with are not ramped, as all would ramp alike. Only with ROUND_ROBIN and LEAST_REQUEST (Istio's default), as in Envoy; not for proxyless gRPC clients"
	keepaliveNote = "SO_KEEPALIVE on the client sidecar's upstream sockets (through a tunnel, its TCP connection) with TCP_KEEPIDLE from time, TCP_KEEPINTVL from interval (whole seconds, as Istio passes them) and TCP_KEEPCNT from probes, each attribute over MeshConfig.tcpKeepalive's, and one neither sets keeps the kernel's default, as Envoy's tcp_keepalive. Unlike Envoy, sockets of clusters without it have Go's keepalive (15 s idle, 15 s interval, 9 probes) rather than none"
	gammaParent   = "only parentRefs of kind Service (GAMMA: mesh routing by the sidecars) are in force; Trellis runs no Gateway API gateways, so a Gateway parent routes nothing"
	platformNote  = "applied by Kubernetes to the pod, not by the mesh; `trellis up` runs the container's command as a local process (docs/local.md)"
)

type rows []Entry

func (r *rows) add(k Kind, path string, s Status, note string) {
	*r = append(*r, Entry{Kind: k, Path: path, Status: s, Note: note})
}

// in lists paths in force.
func (r *rows) in(k Kind, prefix string, paths ...string) {
	for _, p := range paths {
		r.add(k, join(prefix, p), InForce, "")
	}
}

// whole adds a row covering a subtree.
func (r *rows) whole(k Kind, path string, s Status, note string) {
	*r = append(*r, Entry{Kind: k, Path: path, Whole: true, Status: s, Note: note})
}

// value adds a row for one value of a field.
func (r *rows) value(k Kind, path, value string, s Status, note string) {
	*r = append(*r, Entry{Kind: k, Path: path, Value: value, Status: s, Note: note})
}

func (r *rows) security(k Kind, path, value string, whole bool, note string) {
	*r = append(*r, Entry{Kind: k, Path: path, Value: value, Whole: whole, Status: NotInForce, Note: note, Security: true})
}

var table = func() rows {
	var r rows
	virtualService(&r)
	destinationRule(&r)
	serviceEntry(&r)
	workloadEntry(&r)
	sidecar(&r)
	r.whole(IstioGateway, "", NotInForce, "Trellis runs no Istio ingress or egress gateways yet: this Gateway serves nothing, and routes bound to it apply nowhere")
	peerAuthentication(&r)
	authorizationPolicy(&r)
	requestAuthentication(&r)
	telemetry(&r)
	trafficSplit(&r)
	gatewayRoute(&r, HTTPRoute)
	gatewayRoute(&r, GRPCRoute)
	r.whole(GatewayAPIGateway, "", NotInForce, "Trellis runs no Gateway API gateways yet: this Gateway serves nothing, and routes attached to it apply nowhere")
	kubernetes(&r)
	meshConfig(&r)
	return r
}()

// telemetry lists Istio's Telemetry: resolved per sidecar as istiod does
// (root namespace, then namespace, then the workload's selector, later
// levels overriding field by field) and sent as Envoy's HCM tracing,
// file access logs and the istio.stats filter (internal/translate/telemetry.go).
func telemetry(r *rows) {
	k := Telemetry
	r.add(k, "spec.selector.matchLabels{}", InForce, "a Telemetry without a selector applies to its namespace (in the root namespace, to the mesh); one with a selector to the matching workloads in its namespace, over the namespace's and the mesh's field by field; of several at one level the first by name applies (Istio takes the oldest)")
	for _, p := range []string{"spec.targetRef", "spec.targetRefs"} {
		r.whole(k, p, NotInForce, "a Telemetry attached by targetRef applies to gateways and waypoints, which Trellis does not run: the sidecars ignore it, as Istio's do")
	}
	tr := "spec.tracing[]"
	r.add(k, tr+".providers[].name", InForce, "an opentelemetry extensionProvider (or defaultProviders.tracing when none is named): spans go by OTLP/gRPC, or OTLP/HTTP with its http block, to the provider's service, which must be a service in the mesh (its outbound cluster is sent to every sidecar that traces); only the first provider is used, as istiod does; a name MeshConfig does not define is ignored with a warning in the control plane's log")
	r.add(k, tr+".randomSamplingPercentage", InForce, "the share of requests without a sampling decision that are traced (0..100); a request already sampled by its caller is traced; without it defaultConfig.tracing.sampling, else Istio's 1%")
	r.add(k, tr+".disableSpanReporting", InForce, "trace context is still propagated, but no span is exported")
	r.add(k, tr+".match.mode", InForce, "CLIENT applies to the sidecar's outbound side, SERVER to its inbound side")
	r.in(k, tr+".customTags{}", "literal.value", "header.name", "header.defaultValue", "environment.name", "environment.defaultValue")
	r.whole(k, tr+".customTags{}.formatter", NotInForce, "formatter tags (Envoy command operators) are left out of spans")
	for _, f := range []string{"useRequestIdForTraceSampling", "enableIstioTags", "disableContextPropagation"} {
		r.whole(k, tr+"."+f, NotInForce, "not in force yet: the sidecar's default applies")
	}
	al := "spec.accessLogging[]"
	r.add(k, al+".providers[].name", InForce, "envoyFileAccessLog extensionProviders and the built-in envoy (/dev/stdout); without a name, defaultProviders.accessLogging, else envoy; a name MeshConfig does not define is ignored with a warning")
	r.add(k, al+".disabled", InForce, "")
	r.add(k, al+".match.mode", InForce, "CLIENT applies to the sidecar's outbound side, SERVER to its inbound side")
	r.whole(k, al+".filter", NotInForce, "filter.expression is CEL, which the sidecar does not evaluate: every request is logged")
	mt := "spec.metrics[]"
	r.add(k, mt+".providers[].name", InForce, "prometheus (built in, the default): Istio's standard metrics on :15090/stats/prometheus; a provider list without a Prometheus provider turns Istio's metrics off for the workload")
	o := mt + ".overrides[]"
	r.in(k, o, "match.metric", "match.customMetric", "match.mode", "disabled")
	r.value(k, o+".tagOverrides{}.operation", "REMOVE", InForce, "the label is left out of the metric's series")
	r.add(k, o+".tagOverrides{}.operation", NotInForce, "UPSERT sets a label from a CEL expression, which the sidecar does not evaluate: the label keeps its standard value")
	r.whole(k, o+".tagOverrides{}.value", NotInForce, "a CEL expression, which the sidecar does not evaluate: the label keeps its standard value")
	r.whole(k, mt+".reportingInterval", NotInForce, "TCP metrics are reported when the sidecar is scraped and at connection close")
	kubeStatus(r, k)
}

// mirrorNote and corsNote say how mirroring and CORS are in force, for
// VirtualServices and HTTPRoutes alike.
const (
	mirrorNote = "sent by the client's sidecar as Envoy shadows a request: a copy goes to the mirror's cluster with `-shadow` appended to the authority's host (`app:8080` becomes `app-shadow:8080`), fire and forget: its answer is dropped and it never delays or fails the request. mirrorPercentage (or the deprecated mirrorPercent, or a mirrors[] entry's percentage) is the share of requests copied, 100% when unset, none at 0. Unlike Envoy, which streams any body to the mirror: a request body is mirrored only when its length is known and at most 64 KiB (the sidecar reads it whole first); requests with a streamed or larger body or awaiting 100-continue, upgrades and gRPC streams are not mirrored (counted in the sidecar's http.outbound.mirror_skipped_body); at most 64 copies are in flight per sidecar, and past that a copy is dropped (http.outbound.mirror_dropped); a copy ends after the route's timeout, or 15 s without one. Not for proxyless gRPC clients"
	corsNote   = "enforced by the client's sidecar as Envoy's CORS filter: a preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed origin is answered 200 with the policy's Access-Control-Allow-Origin, -Allow-Methods, -Allow-Headers, -Max-Age and -Allow-Credentials (`*` methods or headers echo the preflight's) and never reaches the app; a preflight from another origin goes on to the app (unmatchedPreflights FORWARD, the default) or is answered without Access-Control-Allow-Origin (IGNORE); the responses to an allowed origin get Access-Control-Allow-Origin (that origin), -Allow-Credentials and -Expose-Headers, those of other origins nothing; no Vary header is added, as in Envoy. Not for proxyless gRPC clients"
)

func virtualService(r *rows) {
	k := VirtualService
	r.in(k, "spec", "hosts[]", "exportTo[]")
	gateways := func(path string) {
		r.value(k, path, "mesh", InForce, "")
		r.add(k, path, NotInForce, gatewaysNote)
	}
	gateways("spec.gateways[]")
	h := "spec.http[]"
	r.add(k, h+".name", InForce, "")
	r.add(k, h+".timeout", InForce, "a slower request is answered 504 with X-Trellis-Flags: UT by the client's sidecar; unset or 0s is no timeout, Istio's default")
	r.whole(k, h+".headers", InForce, "")
	m := h + ".match[]"
	r.in(k, m, "name", "port", "sourceLabels{}", "sourceNamespace", "ignoreUriCase")
	for _, sm := range []string{"uri", "scheme", "method", "authority", "headers{}", "queryParams{}", "withoutHeaders{}"} {
		r.in(k, m+"."+sm, "exact", "prefix", "regex")
	}
	gateways(m + ".gateways[]")
	r.add(k, m+".statPrefix", NotInForce, "per-route stats are not in force yet; the route's requests count in the service's stats")
	r.in(k, h+".route[]", "destination.host", "destination.subset", "destination.port.number", "weight")
	r.whole(k, h+".route[].headers", InForce, "")
	r.in(k, h+".redirect", "uri", "authority", "port", "derivePort", "scheme", "redirectCode", "prefixRewrite")
	r.whole(k, h+".directResponse", InForce, "")
	r.whole(k, h+".delegate", InForce, "one level deep, with Istio's match merging; a delegation that cannot be followed drops only that route (TRL0008)")
	r.whole(k, h+".rewrite", InForce, "")
	*r = append(*r, Entry{Kind: k, Path: h + ".retries", Value: "attempts: 0", Whole: true, Status: InForce,
		Note: "retries turned off, as written", match: noAttempts})
	r.whole(k, h+".retries", InForce, retriesNote)
	r.whole(k, h+".fault", InForce, "injected by the client's sidecar, as Envoy's fault filter: a delay holds the request (flag DI), an abort answers httpStatus with the body `fault filter abort` (flag FI), grpcStatus as a gRPC status; as Istio documents, the route's timeout is off beside a fault. Not for proxyless gRPC clients yet")
	for _, p := range []string{"mirror", "mirrors", "mirrorPercent", "mirrorPercentage"} {
		r.whole(k, h+"."+p, InForce, mirrorNote)
	}
	r.whole(k, h+".corsPolicy", InForce, corsNote)
	for _, l4 := range []string{"tls", "tcp"} {
		p := "spec." + l4 + "[]"
		r.in(k, p+".match[]", "port", "sourceLabels{}", "sourceNamespace")
		r.add(k, p+".match[].destinationSubnets[]", InForce, "matched against the connection's original destination; for a CONNECT by name, the service's VIP (a service without a VIP matches no subnet)")
		gateways(p + ".match[].gateways[]")
		r.in(k, p+".route[]", "destination.subset", "destination.port.number", "weight")
	}
	r.add(k, "spec.tcp[].route[].destination.host", InForce, "tcp routes apply to ports declared TCP (tcp, mongo, redis, mysql, ...); unlike Istio, not to ports with no declared protocol")
	r.add(k, "spec.tls[].route[].destination.host", InForce, "tls routes apply to ports declared TLS or HTTPS")
	r.add(k, "spec.tls[].match[].sniHosts[]", InForce, "once a tls match applies to a port, a connection whose server name no route names is closed, as in Istio; the sidecar waits up to 15 s for the ClientHello")
	r.add(k, "spec.tcp[].match[].sourceSubnet", NotInForce, "sourceSubnet (deprecated in Istio) is not in force: the rule matches any source address")
}

// trafficPolicy lists the rows of a TrafficPolicy (or PortTrafficPolicy)
// rooted at p.
func trafficPolicy(r *rows, k Kind, p string, port bool) {
	lb := p + ".loadBalancer"
	r.in(k, lb, "simple")
	ch := lb + ".consistentHash"
	r.in(k, ch, "httpHeaderName", "httpCookie.name", "httpCookie.path", "httpCookie.ttl", "useSourceIp",
		"httpQueryParameterName", "ringHash.minimumRingSize", "maglev.tableSize", "minimumRingSize")
	r.whole(k, ch+".httpCookie.attributes", NotInForce, "cookie attributes are not in force yet: the generated cookie carries only its name, path and TTL")
	r.whole(k, lb+".backendUtilization", NotInForce, "utilization-based load balancing is not in force yet: the load balancer in `simple` (default LEAST_REQUEST) is used")
	r.whole(k, lb+".localityLbSetting", InForce, localityNote)
	r.whole(k, lb+".zoneAwareLbSetting", NotInForce, "zone-aware load balancing (Envoy's zone-aware routing) is not in force yet: the rule is read as if it had no locality setting, so Istio's default locality failover applies with outlier detection; use localityLbSetting")
	r.whole(k, lb+".warmupDurationSecs", InForce, warmupNote)
	r.whole(k, lb+".warmup", InForce, warmupNote)
	connectionPool(r, k, p+".connectionPool")
	r.whole(k, p+".outlierDetection", InForce, outlierNote)
	r.add(k, p+".outlierDetection.consecutiveErrors", NotInForce, "deprecated and ignored, as istiod ignores it (its validation warns): use consecutive5xxErrors or consecutiveGatewayErrors")
	r.add(k, p+".outlierDetection.outlierDetectionHttpErrorCodes[]", NotInForce, "custom error codes are not in force yet: every 5xx, and only a 5xx, counts as an error")
	r.add(k, p+".outlierDetection.failurePercentageThreshold", NotInForce, "failure-percentage ejection is not in force (istiod does not translate it either): endpoints are ejected for consecutive errors only")
	tls := p + ".tls"
	r.add(k, tls+".mode", InForce, "DISABLE: plaintext, straight to the endpoint even when it runs a sidecar; ISTIO_MUTUAL: mutual TLS with the workload identity through the endpoint's tunnel port; SIMPLE and MUTUAL: TLS originated by the sidecar straight to the endpoint, with the files named (read at each new connection); no tls at all: auto mTLS (endpoints with a sidecar over mTLS, others in plaintext)")
	r.in(k, tls, "clientCertificate", "privateKey", "sni", "insecureSkipVerify")
	r.add(k, tls+".caCertificates", InForce, "without it the sidecar verifies the server against the system's trust store, as Istio does by default")
	r.add(k, tls+".subjectAltNames[]", InForce, "exact URI or DNS names, any one of which the server's certificate must carry; without them SIMPLE and MUTUAL check the SNI as a host name")
	for _, f := range []string{"credentialName", "caCertCredentialName"} {
		r.security(k, tls+"."+f, "", false, "Kubernetes secrets are not read by sidecars: name the files with clientCertificate, privateKey and caCertificates; without them the sidecar presents no client certificate and verifies against the system's trust store")
	}
	r.add(k, tls+".caCrl", InForce, "SIMPLE and MUTUAL: a PEM file of CRLs, read at each new connection; a server certificate they revoke is refused (503 UF), and as in Envoy every CA of the server's chain needs a current CRL it signed in the file; a file that cannot be read, or holds no valid CRL, refuses every connection of the cluster. Not applied with insecureSkipVerify or ISTIO_MUTUAL")
	if port {
		r.in(k, p, "port.number")
		return
	}
	trafficPolicy(r, k, p+".portLevelSettings[]", true)
	r.whole(k, p+".tunnel", NotInForce, "tunnelling through an HTTP CONNECT proxy is not in force yet: the sidecar connects to the destination directly")
	r.whole(k, p+".proxyProtocol", NotInForce, "PROXY protocol is not in force yet: no PROXY header is sent upstream")
	r.whole(k, p+".retryBudget", InForce, "the retries in flight to the cluster are bounded by percent (default 20) of its active and pending requests, never below minRetryConcurrency (default 3), as Envoy's retry_budget, in place of maxRetries; a retry refused is counted (upstream_rq_retry_overflow) and the answer carries X-Trellis-Flags UO. budgetInterval is not in force: only the requests active now count")
}

func connectionPool(r *rows, k Kind, cp string) {
	r.in(k, cp, "tcp.maxConnections", "tcp.connectTimeout",
		"http.http1MaxPendingRequests", "http.http2MaxRequests", "http.maxRequestsPerConnection", "http.idleTimeout", "http.h2UpgradePolicy")
	r.whole(k, cp+".tcp.tcpKeepalive", InForce, keepaliveNote)
	r.add(k, cp+".tcp.maxConnectionDuration", InForce, "the client sidecar's upstream connections are recycled at this age, as Envoy's max_connection_duration: an HTTP/2 connection takes no new stream (the next opens a new connection) and closes once its streams finish; an HTTP/1.1 connection carries no request after it (one of those kept for streamed bodies, upgrades and 100-continue carries one more, with Connection: close, and an idle one closes when next picked). It replaces the sidecar's default age for HTTP/2 (5 minutes ±10%, trellis-proxy --max-connection-age; 0 turns the default off); Envoy has no default. On TCP services a proxied connection is closed at this age (Envoy's max_downstream_connection_duration), from the rule's top-level trafficPolicy only, as Istio takes it")
	r.add(k, cp+".tcp.idleTimeout", InForce, "on TCP services, a proxied connection with no bytes either way for this long is closed (Envoy's tcp_proxy idle_timeout; unset: Envoy's hour, also for non-HTTP bytes on HTTP ports and CONNECT to unknown hosts), from the rule's top-level trafficPolicy only, as Istio takes it; on HTTP services, the upstream connections' idle timeout when http.idleTimeout is unset, as Istio")
	r.add(k, cp+".http.maxRetries", InForce, "the retries in flight to the cluster at once (Envoy's max_retries); unset is istiod's unbounded default, not Envoy's 3. A retry refused is counted (upstream_rq_retry_overflow) and the answer carries X-Trellis-Flags UO")
	r.add(k, cp+".http.useClientProtocol", InForce, "requests go upstream in the HTTP version the client spoke to its sidecar (HTTP/2 from an HTTP/2 client, else HTTP/1.1) in place of the port's protocol and h2UpgradePolicy, as Istio's use_downstream_protocol_config; as in Istio the HTTP/2 settings (maxConcurrentStreams, http2KeepAlive) then have no effect; upgrades and CONNECT stay HTTP/1.1")
	r.add(k, cp+".http.maxConcurrentStreams", InForce, "an upstream HTTP/2 connection carries at most this many streams at once; a further one opens another connection (Envoy's max_concurrent_streams on the cluster). Only on clusters that speak HTTP/2 (HTTP2 and gRPC ports, h2UpgradePolicy UPGRADE), as in Istio")
	r.whole(k, cp+".http.http2KeepAlive", InForce, "on clusters that speak HTTP/2, an upstream connection from which nothing arrived for interval is sent a PING and closed when none answers within timeout, so requests after it open a new connection (Go's HTTP/2 health check; Envoy pings every interval even on a busy connection)")
}

func destinationRule(r *rows) {
	k := DestinationRule
	r.in(k, "spec", "host", "exportTo[]", "workloadSelector.matchLabels{}", "subsets[].name", "subsets[].labels{}")
	trafficPolicy(r, k, "spec.trafficPolicy", false)
	trafficPolicy(r, k, "spec.subsets[].trafficPolicy", false)
}

func serviceEntry(r *rows) {
	k := ServiceEntry
	r.in(k, "spec", "hosts[]", "addresses[]", "ports[].number", "ports[].protocol", "ports[].name", "ports[].targetPort",
		"location", "resolution", "endpoints[].address", "endpoints[].ports{}", "endpoints[].labels{}",
		"endpoints[].locality", "endpoints[].weight", "workloadSelector.labels{}", "exportTo[]")
	r.add(k, "spec.endpoints[].network", NotInForce, "multi-network routing is not in force: every endpoint is dialled directly")
	r.add(k, "spec.endpoints[].serviceAccount", InForce, "the identity a client sidecar expects of the endpoint over mutual TLS")
	r.add(k, "spec.subjectAltNames[]", InForce, "identities a client sidecar accepts from the service's endpoints over mutual TLS, beside its service accounts'")
}

func workloadEntry(r *rows) {
	k := WorkloadEntry
	r.in(k, "spec", "address", "ports{}", "labels{}", "locality", "weight")
	r.add(k, "spec.network", NotInForce, "multi-network routing is not in force: the workload is dialled directly")
	r.add(k, "spec.serviceAccount", InForce, "the identity clients expect of the workload: its SPIFFE ID is checked in the mTLS handshake")
}

func sidecar(r *rows) {
	k := Sidecar
	r.in(k, "spec", "workloadSelector.labels{}", "egress[].hosts[]")
	r.add(k, "spec.egress[].port.number", InForce, "the listener imports its hosts on this port only, and on this port it alone decides; the listener without a port imports its hosts on every other port. Port 0 (a unix socket) imports nothing, since bind is not in force")
	r.add(k, "spec.egress[].port.protocol", InForce, "the protocol of the proxy's outbound listener on the port (clusters keep the service port's); none: sniffed, as in Istio. HTTP_PROXY matches no port, so its hosts are imported on every port like the catch-all's; UDP imports nothing")
	r.add(k, "spec.egress[].port.name", InForce, "a label, as in Istio: it does not set the protocol")
	r.add(k, "spec.egress[].port.targetPort", Inert, "Istio ignores targetPort on egress listeners; validation rejects it as having no effect")
	r.add(k, "spec.egress[].bind", NotInForce, "egress bind addresses are not in force yet: the sidecar's own listeners are used, and a unix socket listener (port 0) reaches nothing")
	r.add(k, "spec.egress[].captureMode", NotInForce, "captureMode is not in force yet: the pod's interception mode applies")
	r.whole(k, "spec.ingress", NotInForce, "Sidecar ingress listeners are not in force yet: inbound traffic reaches the app on the Service's target ports")
	r.whole(k, "spec.inboundConnectionPool", NotInForce, "inbound connection limits are not in force yet")
	r.add(k, "spec.outboundTrafficPolicy.mode", InForce, "overrides MeshConfig's mode for the workloads the Sidecar selects")
	r.whole(k, "spec.outboundTrafficPolicy.egressProxy", NotInForce, "an egress proxy is not in force yet: traffic to hosts outside the registry follows the mode")
}

// requestAuthentication lists what the sidecars enforce of a
// RequestAuthentication: compiled as istiod compiles it into Envoy's
// jwt_authn filter (translate's jwt.go) and verified by the proxy's
// jwtauthn package on the inbound side, before authorization. A token
// that fails is refused with 401; a request without one passes
// unauthenticated, for AuthorizationPolicy to judge.
func requestAuthentication(r *rows) {
	k := RequestAuthentication
	r.add(k, "spec.selector.matchLabels{}", InForce, "tokens are verified on the HTTP ports the workload's Services declare; unlike Istio, HTTP to a port no Service declares reaches the app unverified")
	for _, p := range []string{"spec.targetRef", "spec.targetRefs"} {
		r.security(k, p, "", true, "a policy attached by targetRef applies to gateways and waypoints, which Trellis does not run: the sidecars ignore it, as Istio's do")
	}
	j := "spec.jwtRules[]"
	r.in(k, j, "issuer", "audiences[]", "jwks", "fromHeaders[].name", "fromHeaders[].prefix", "fromParams[]",
		"outputPayloadToHeader", "forwardOriginalToken", "outputClaimToHeaders[].header", "outputClaimToHeaders[].claim", "timeout")
	r.add(k, j+".jwksUri", InForce, "fetched by the sidecar itself (Istio's PILOT_JWT_ENABLE_REMOTE_JWKS=envoy), cached 5 minutes and refreshed in the background; until the first fetch succeeds the issuer's tokens are refused (401 \"Jwks remote fetch is failed\"), never held. A rule with neither jwks nor jwksUri refuses its issuer's tokens: OpenID discovery is not supported")
	r.add(k, j+".fromCookies[]", InForce, "as in Envoy, a token read from a cookie stays in the request")
	r.add(k, j+".presence", InForce, "REQUIRED: a request without the rule's token is refused with 401")
	r.add(k, j+".spaceDelimitedClaims[]", InForce, "with Istio's scope and permission, split into words for AuthorizationPolicy's request.auth.claims")
	kubeStatus(r, k)
}

func peerAuthentication(r *rows) {
	k := PeerAuthentication
	r.in(k, "spec", "selector.matchLabels{}")
	for _, p := range []string{"spec.mtls.mode", "spec.portLevelMtls{}.mode"} {
		r.add(k, p, InForce, "STRICT: the sidecar takes mutual TLS only, on its tunnel port (sidecar to sidecar) and, in transparent mode, on the app's captured ports, where a plaintext connection is closed and counted; PERMISSIVE takes both; DISABLE terminates nothing; UNSET inherits. In explicit mode nothing captures the app's ports, so a local process can still reach them directly, past the sidecar (docs/local.md)")
	}
}

// Notes of AuthorizationPolicy's rows.
const (
	identityNote         = "the caller's SPIFFE ID from its mTLS certificate; traffic that reaches the workload in plaintext (a caller without a sidecar, a port PeerAuthentication leaves PERMISSIVE, or in explicit local mode a process dialling the app port directly) has no identity and compares as empty, as in Istio (TRL0010)"
	requestPrincipalNote = "what the RequestAuthentication of the workload verified (\"iss/sub\" of each valid token, its aud, azp and claims); a request without a token has no request principal, as in Istio, so an ALLOW on requestPrincipals refuses it and a DENY on notRequestPrincipals [\"*\"] refuses it"
	customNote           = "with a MeshConfig extensionProviders envoyExtAuthzHttp or envoyExtAuthzGrpc provider, the sidecar asks it about the requests the rules select, before DENY and ALLOW (with the request body when the provider sets includeRequestBodyInCheck); a provider that is missing or unusable (TRL0012), and TCP ports, are refused instead: the requests the rules match get 403 (connections are closed)"
	targetRefNote        = "a policy attached by targetRef applies to gateways and waypoints, which Trellis does not run: the sidecars ignore it, as Istio's do"
)

// authorizationPolicy lists what the sidecars enforce of an
// AuthorizationPolicy (compiled to Envoy RBAC as Istio does: translate's
// authz.go, the proxy's authz package): the parts the proxy cannot check
// (Envoy's experimental filter metadata) fail closed as Istio's unusable
// rules do, and are marked so.
func authorizationPolicy(r *rows) {
	k := AuthorizationPolicy
	r.in(k, "spec", "selector.matchLabels{}")
	for _, p := range []string{"spec.targetRef", "spec.targetRefs"} {
		r.security(k, p, "", true, targetRefNote)
	}
	r.value(k, "spec.action", "AUDIT", InForce, "requests a rule matches are logged by the sidecar (level INFO, \"authorization audit\") and let through")
	r.value(k, "spec.action", "CUSTOM", InForce, customNote)
	r.add(k, "spec.action", InForce, "ALLOW (the default) and DENY; DENY policies are checked first, as in Istio")
	r.in(k, "spec", "provider.name")
	src := "spec.rules[].from[].source"
	for _, f := range []string{"principals[]", "notPrincipals[]", "namespaces[]", "notNamespaces[]", "serviceAccounts[]", "notServiceAccounts[]"} {
		r.add(k, src+"."+f, InForce, identityNote)
	}
	r.in(k, src, "ipBlocks[]", "notIpBlocks[]")
	r.add(k, src+".remoteIpBlocks[]", InForce, "the original client as the last X-Forwarded-For address names it (Envoy's remote address), else the connection's peer")
	r.add(k, src+".notRemoteIpBlocks[]", InForce, "the original client as the last X-Forwarded-For address names it (Envoy's remote address), else the connection's peer")
	for _, f := range []string{"requestPrincipals[]", "notRequestPrincipals[]"} {
		r.add(k, src+"."+f, InForce, requestPrincipalNote)
	}
	for _, f := range []string{"trustDomains[]", "notTrustDomains[]"} {
		r.add(k, src+"."+f, InForce, "the trust domain of the caller's SPIFFE ID (MeshConfig trustDomainAliases count as the mesh's own); plaintext callers have none")
	}
	op := "spec.rules[].to[].operation"
	r.in(k, op, "hosts[]", "notHosts[]", "methods[]", "notMethods[]")
	r.add(k, op+".ports[]", InForce, "the workload's (container, target) port; on a TCP port, rules with HTTP fields behave as in Istio (TRL0011)")
	r.add(k, op+".notPorts[]", InForce, "")
	pathNote := "exact, prefix*, *suffix and *, against the path without query; a request whose path has dot segments, backslashes or encoded separators is refused (400) where a policy applies, since the sidecar does not normalize paths as Envoy does; templates: {*} one segment, {**} the rest of the path"
	r.add(k, op+".paths[]", InForce, pathNote)
	r.add(k, op+".notPaths[]", InForce, pathNote)
	w := "spec.rules[].when[]"
	*r = append(*r, Entry{Kind: k, Path: w + ".key", Value: "request.auth.*", Status: InForce, Note: requestPrincipalNote, match: prefixed("request.auth.")})
	*r = append(*r, Entry{Kind: k, Path: w + ".key", Value: "connection.sni", Status: InForce,
		Note: "the server name the caller's TLS handshake asked for (its mTLS tunnel or, in transparent mode, the captured connection's); sidecars ask for Istio's outbound_.PORT_.SUBSET_.HOST; plaintext has none (\"\")", match: func(v any) bool { return v == "connection.sni" }})
	*r = append(*r, Entry{Kind: k, Path: w + ".key", Value: "experimental.envoy.filters.*", Status: NotInForce, Security: true,
		Note: "not checked: an ALLOW rule with this condition allows nothing, a DENY rule matches as if it were not set", match: uncheckedConditionKey})
	r.add(k, w+".key", InForce, "")
	r.in(k, w, "values[]", "notValues[]")
	kubeStatus(r, k)
}

// prefixed matches a string value starting with p.
func prefixed(p string) func(any) bool {
	return func(v any) bool {
		s, ok := v.(string)
		return ok && strings.HasPrefix(s, p)
	}
}

// uncheckedConditionKey matches the when keys the proxy cannot check yet.
func uncheckedConditionKey(v any) bool {
	s, ok := v.(string)
	return ok && strings.HasPrefix(s, "experimental.envoy.filters.")
}

func trafficSplit(r *rows) {
	k := TrafficSplit
	r.in(k, "spec", "service", "backends[].service", "backends[].weight")
	r.whole(k, "spec.matches", NotInForce, "TrafficSplit matches (HTTPRouteGroup, TCPRoute) are not in force yet: the split applies to every request")
	kubeStatus(r, k)
}

// noAttempts says whether a retry policy (an object) turns retries off.
func noAttempts(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	switch a := m["attempts"].(type) {
	case json.Number:
		return a.String() == "0"
	case float64:
		return a == 0
	}
	return false
}

// isGateway says whether a Gateway API parentRef (an object) names a
// Gateway rather than a Service: kind defaults to Gateway.
func isGateway(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	kind, _ := m["kind"].(string)
	return kind != "Service"
}

func gatewayRoute(r *rows, k Kind) {
	*r = append(*r, Entry{Kind: k, Path: "spec.parentRefs[]", Value: "kind: Gateway (the default)", Whole: true, Status: NotInForce, Note: gammaParent, match: isGateway})
	r.in(k, "spec.parentRefs[]", "group", "kind", "name", "namespace", "port")
	r.add(k, "spec.parentRefs[].sectionName", InForce, "for a Service parent, the name of one of its ports: the route attaches to that port only (with `port` set too, both must match)")
	r.add(k, "spec.hostnames[]", InForce, "ignored for Service parents, as GAMMA specifies")
	r.add(k, "spec.useDefaultGateways", NotInForce, gammaParent)
	rule := "spec.rules[]"
	r.in(k, rule, "name", "backendRefs[].group", "backendRefs[].kind", "backendRefs[].name", "backendRefs[].namespace", "backendRefs[].port", "backendRefs[].weight")
	// A backendRef's filters apply only when that backend is picked; the
	// header modifiers go on its weighted cluster, the others are skipped.
	bf := rule + ".backendRefs[].filters[]"
	r.in(k, bf, "type")
	r.whole(k, bf+".requestHeaderModifier", InForce, "applies only to requests sent to this backend")
	r.whole(k, bf+".responseHeaderModifier", InForce, "applies only to responses from this backend")
	r.whole(k, bf+".requestMirror", NotInForce, "per-backend mirroring is not in force: the filter is skipped and no copies of the requests are sent")
	r.whole(k, bf+".extensionRef", NotInForce, "extension filters are not in force: the filter is skipped")
	if k == HTTPRoute {
		r.whole(k, bf+".requestRedirect", NotInForce, "a per-backend redirect is not in force: the filter is skipped and the request goes to the backend (a rule's requestRedirect is in force)")
		r.whole(k, bf+".urlRewrite", NotInForce, "a per-backend URL rewrite is not in force: the filter is skipped and the backend gets the path and Host unchanged (a rule's urlRewrite is in force)")
		r.whole(k, bf+".cors", NotInForce, "per-backend CORS is not in force: the filter is skipped, preflight requests reach the app and no CORS headers are added")
		r.whole(k, bf+".externalAuth", NotInForce, "external authorization is NOT ENFORCED: the Gateway API defines externalAuth for a rule's filters only, not a backendRef's; the filter is skipped and requests are not checked")
	}
	r.whole(k, rule+".matches", InForce, "")
	r.in(k, rule+".filters[]", "type")
	r.whole(k, rule+".filters[].requestHeaderModifier", InForce, "")
	r.whole(k, rule+".filters[].responseHeaderModifier", InForce, "")
	if k == HTTPRoute {
		r.whole(k, rule+".filters[].requestMirror", InForce, mirrorNote+". percent, or fraction (numerator over denominator, 100 by default), is the share copied")
	} else {
		r.whole(k, rule+".filters[].requestMirror", NotInForce, "a GRPCRoute's mirroring is not in force: gRPC calls stream their bodies, which the sidecar does not mirror, so no copies are sent")
	}
	r.whole(k, rule+".filters[].extensionRef", NotInForce, "extension filters are not in force: the filter is skipped")
	r.whole(k, rule+".sessionPersistence", NotInForce, "session persistence is not in force yet: requests are balanced independently")
	if k == HTTPRoute {
		r.whole(k, rule+".filters[].requestRedirect", InForce, "")
		r.whole(k, rule+".filters[].urlRewrite", InForce, "")
		r.whole(k, rule+".filters[].cors", InForce, corsNote+". Preflights from other origins go on to the app. An origin's `*` matches any labels to its left, as the Gateway API says (Istio matches it literally); maxAge is 5 seconds when unset, the API's default")
		r.whole(k, rule+".filters[].externalAuth", NotInForce, "external authorization is NOT ENFORCED yet: requests are not checked")
		r.whole(k, rule+".timeouts", InForce, "as istiod converts them: request is the route's timeout (504, X-Trellis-Flags UT), backendRequest the per-try timeout under a retry, else the route's timeout")
		r.whole(k, rule+".retry", InForce, "as istiod converts it: attempts (default 2) retries on connect-failure, refused-stream, unavailable, cancelled and the codes listed, after backoff; without retry the mesh's default retry policy applies. "+retriesNote)
	}
	kubeStatus(r, k)
}

// kubeStatus covers the parts of every Kubernetes-style object that carry
// no behaviour.
func kubeStatus(r *rows, k Kind) {
	r.in(k, "metadata", "name", "namespace", "labels{}")
	annotations(r, k, "metadata.annotations{}")
	r.whole(k, "metadata", Inert, "bookkeeping set by the API server")
	if !noStatus[k] {
		r.whole(k, "status", Inert, "written by controllers, never read")
	}
}

// readAnnotations are the Istio-style annotations Trellis reads
// (docs/config.md).
var readAnnotations = map[string]bool{
	"sidecar.istio.io/inject":                true,
	"sidecar.istio.io/rewriteAppHTTPProbers": true, // trellis up's probes (internal/local/probe.go)
	"inject.istio.io/templates":              true, // grpc-agent: proxyless gRPC (registry/proxyless.go, internal/local/proxyless.go)
	"networking.istio.io/exportTo":           true,
	"trellis.io/load-balancer":               true,
}

// unreadAnnotation says whether an annotation key belongs to Istio (or
// Trellis) and is not one Trellis reads: an annotation users put there to
// change the mesh's behaviour, with no effect here.
func unreadAnnotation(key string) bool {
	if readAnnotations[key] {
		return false
	}
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	return prefix == "trellis.io" || prefix == "istio.io" || strings.HasSuffix(prefix, ".istio.io")
}

// annotations are free-form; only Istio's and Trellis's own keys that are
// not read are reported.
func annotations(r *rows, k Kind, p string) {
	*r = append(*r, Entry{Kind: k, Path: p, Value: "an Istio or Trellis annotation not listed in docs/config.md", Status: NotInForce,
		Note: "this annotation is not read by Trellis and has no effect", matchKey: unreadAnnotation})
	r.add(k, p, InForce, "Trellis reads `sidecar.istio.io/inject`, `sidecar.istio.io/rewriteAppHTTPProbers` and `inject.istio.io/templates` (`grpc-agent`: proxyless gRPC, also on pods and WorkloadEntries) on pod templates (`trellis up`, docs/local.md), `networking.istio.io/exportTo` and `trellis.io/load-balancer`; other keys are kept, as Kubernetes keeps them")
}

// noStatus are the kinds whose objects have no status.
var noStatus = map[Kind]bool{TrafficSplit: true, ServiceAccount: true, ConfigMap: true, EndpointSlice: true}

func kubernetes(r *rows) {
	for _, k := range []Kind{Namespace, Service, ServiceAccount, ConfigMap, Pod, Deployment, EndpointSlice} {
		kubeStatus(r, k)
	}
	// Istio kinds have metadata and status too; the walk starts at spec.
	for _, k := range []Kind{VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, Sidecar, PeerAuthentication} {
		kubeStatus(r, k)
	}
	r.whole(Namespace, "spec", Inert, "finalizers are the API server's")

	s := Service
	r.in(s, "spec", "selector{}", "ports[].name", "ports[].port", "ports[].targetPort", "ports[].protocol", "ports[].appProtocol",
		"type", "clusterIP", "clusterIPs[]", "externalName")
	r.whole(s, "spec", Platform, "load balancer, node and IP family settings are Kubernetes' (kube-proxy, cloud load balancers); sidecars route by the selector and ports")
	r.value(s, "spec.internalTrafficPolicy", "Cluster", InForce, "")
	r.add(s, "spec.internalTrafficPolicy", NotInForce, "internalTrafficPolicy Local is not in force: endpoints on every node are used")
	r.add(s, "spec.trafficDistribution", NotInForce, "trafficDistribution is not in force: endpoints of every zone are used alike")
	r.add(s, "spec.ports[].nodePort", Platform, "node ports are opened by kube-proxy on Kubernetes; `trellis up` has no nodes")
	r.add(s, "spec.sessionAffinity", NotInForce, "sessionAffinity is not in force: use a DestinationRule consistentHash on useSourceIp")
	r.whole(s, "spec.sessionAffinityConfig", NotInForce, "sessionAffinity is not in force: use a DestinationRule consistentHash on useSourceIp")
	r.add(s, "spec.publishNotReadyAddresses", NotInForce, "not-ready endpoints are never used")

	r.whole(ServiceAccount, "", Platform, "a ServiceAccount names an identity; tokens and image pull secrets are Kubernetes'")
	r.in(ConfigMap, "", "data{}", "binaryData{}", "immutable")

	r.in(EndpointSlice, "", "addressType", "endpoints[].addresses[]", "endpoints[].conditions.ready", "ports[].name", "ports[].port")
	r.add(EndpointSlice, "endpoints[].conditions.serving", NotInForce, "only `ready` decides whether an endpoint is used")
	r.add(EndpointSlice, "endpoints[].conditions.terminating", NotInForce, "only `ready` decides whether an endpoint is used")
	r.add(EndpointSlice, "endpoints[].zone", Inert, "as in Istio, an endpoint's locality comes from its pod (targetRef): its istio-locality or topology labels")
	r.add(EndpointSlice, "endpoints[].hostname", NotInForce, "per-endpoint DNS names are not served")
	r.add(EndpointSlice, "endpoints[].nodeName", Inert, "not used by the mesh")
	r.add(EndpointSlice, "ports[].protocol", Inert, "the Service's port decides the protocol")
	r.add(EndpointSlice, "ports[].appProtocol", Inert, "the Service's port decides the protocol")
	r.whole(EndpointSlice, "endpoints[].targetRef", InForce, "")
	r.whole(EndpointSlice, "endpoints[].hints", NotInForce, "topology hints are not in force: endpoints of every zone are used alike")
	r.whole(EndpointSlice, "endpoints[].deprecatedTopology", Inert, "deprecated by Kubernetes")

	podSpec(r, Pod, "spec")
	r.in(Deployment, "spec", "replicas", "selector.matchLabels{}", "template.metadata.labels{}")
	annotations(r, Deployment, "spec.template.metadata.annotations{}")
	r.whole(Deployment, "spec.selector.matchExpressions", InForce, "")
	r.whole(Deployment, "spec.template.metadata", Inert, "bookkeeping")
	r.whole(Deployment, "spec", Platform, "rollout settings are Kubernetes'; `trellis up` replaces a changed Deployment's pods at once")
	podSpec(r, Deployment, "spec.template.spec")
}

// podSpec marks what the mesh reads in a pod: its service account (the
// identity), its containers' ports (the endpoints), and what `trellis up`
// runs. The rest is the platform's.
func podSpec(r *rows, k Kind, p string) {
	r.whole(k, p, Platform, platformNote)
	r.in(k, p, "serviceAccountName", "hostNetwork")
	for _, c := range []string{"containers[]", "initContainers[]"} {
		r.in(k, p+"."+c, "name", "command[]", "args[]", "ports[].name", "ports[].containerPort", "ports[].protocol", "workingDir")
		r.whole(k, p+"."+c+".env", InForce, "")
		r.whole(k, p+"."+c+".envFrom", InForce, "")
		for _, probe := range []string{"readinessProbe", "livenessProbe", "startupProbe"} {
			r.whole(k, p+"."+c+"."+probe, InForce, "")
		}
	}
}

// meshConfig lists MeshConfig: the fields read are in force, every other
// top-level field is named as not in force (so a field Istio adds is
// warned about, never silently taken as working).
func meshConfig(r *rows) {
	k := MeshConfig
	r.in(k, "", "rootNamespace", "connectTimeout", "outboundTrafficPolicy.mode", "enableAutoMtls")
	r.add(k, "trustDomain", InForce, "the mesh CA issues certificates in it (`spiffe://<trustDomain>/ns/NS/sa/SA`), sidecars check peers against it and AuthorizationPolicy principals name it; read at the control plane's start and for each new pod's credential, so running pods keep their certificates' trust domain until they restart")
	r.whole(k, "outboundTrafficPolicy.tls", NotInForce, tlsOrigNote)
	r.in(k, "defaultConfig", "terminationDrainDuration", "concurrency")
	r.whole(k, "localityLbSetting", InForce, "the mesh-wide default for DestinationRules without one: "+localityNote)
	*r = append(*r, Entry{Kind: k, Path: "defaultConfig", Whole: true, Default: true, Status: NotInForce,
		Note: "this ProxyConfig field is not in force yet: the sidecar's default applies"})
	r.add(k, "trustDomainAliases[]", Partly, "AuthorizationPolicy principals and trustDomains naming the mesh's trust domain (or cluster.local) also match these, as in Istio; certificates are issued in trustDomain only, and mTLS peer checks do not use the aliases")
	r.whole(k, "defaultHttpRetryPolicy", InForce, "the retry policy of every route whose VirtualService sets no retries (attempts 0: none); without it Istio's default: 2 retries on connect-failure, refused-stream, unavailable, cancelled and retriable-status-codes with no code listed, so an app's own 503 is not retried (istiod's EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY)")
	r.add(k, "pathNormalization.normalization", InForce, "NONE, BASE (the default), MERGE_SLASHES and DECODE_AND_MERGE_SLASHES, as Istio sets Envoy's normalize_path, merge_slashes and path_with_escaped_slashes_action on inbound and outbound sidecars: the path is normalized before authorization and routing, and the normalized path is what the app is sent")
	ep := "extensionProviders[]"
	r.in(k, ep, "name")
	authz := ep + ".envoyExtAuthzHttp"
	r.in(k, authz, "service", "port", "timeout", "pathPrefix", "failOpen", "statusOnError", "includeRequestHeadersInCheck[]",
		"includeHeadersInCheck[]", "includeAdditionalHeadersInCheck{}", "headersToUpstreamOnAllow[]", "headersToDownstreamOnDeny[]")
	r.add(k, authz+".clearRouteCache", InForce, "the sidecar chooses the route after authorization, so headers the provider adds always count")
	grpcAuthz := ep + ".envoyExtAuthzGrpc"
	r.in(k, grpcAuthz, "service", "port", "timeout", "failOpen", "statusOnError")
	r.add(k, grpcAuthz+".clearRouteCache", InForce, "the sidecar chooses the route after authorization, so headers the provider adds always count")
	for _, p := range []string{authz, grpcAuthz} {
		r.add(k, p+".includeRequestBodyInCheck.maxRequestBytes", InForce, "the sidecar buffers the body of a request a CUSTOM rule selects up to this many bytes and sends it with the check (with x-envoy-auth-partial-body: true or false, as Envoy); a longer body gets Envoy's 413 unless allowPartialMessage; the app receives the whole body after an allow. 0 (Envoy refuses it): the requests the CUSTOM rules match are refused (TRL0012)")
		r.add(k, p+".includeRequestBodyInCheck.allowPartialMessage", InForce, "a body past maxRequestBytes is sent cut to maxRequestBytes, marked x-envoy-auth-partial-body: true, instead of a 413")
	}
	r.add(k, authz+".includeRequestBodyInCheck.packAsBytes", InForce, "an HTTP authorizer gets the body as the check request's body either way")
	r.add(k, grpcAuthz+".includeRequestBodyInCheck.packAsBytes", InForce, "the CheckRequest carries the body in raw_body instead of body")
	// Default: reported at the provider kinds below an entry, not at the
	// entry itself, which an authorization provider is in force.
	r.add(k, authz, InForce, "")
	r.add(k, grpcAuthz, InForce, "")
	otel := ep + ".opentelemetry"
	r.add(k, otel+".service", InForce, "the collector: a service in the mesh, as <host> or <namespace>/<host>; spans go to its outbound cluster")
	r.in(k, otel, "port", "maxTagLength", "http.path", "http.timeout", "http.headers[].name", "http.headers[].value", "grpc.timeout", "grpc.initialMetadata[].name", "grpc.initialMetadata[].value")
	r.add(k, otel, InForce, "")
	fal := ep + ".envoyFileAccessLog"
	r.in(k, fal, "path", "logFormat.text")
	r.add(k, fal+".logFormat.labels", Partly, "JSON lines on; the keys are Istio's default JSON access-log keys, not the labels given")
	r.add(k, fal, InForce, "")
	r.add(k, ep+".prometheus", InForce, "Istio's standard metrics on each sidecar's :15090/stats/prometheus")
	*r = append(*r, Entry{Kind: k, Path: ep, Whole: true, Default: true, Status: NotInForce,
		Note: "only envoyExtAuthzHttp, envoyExtAuthzGrpc, opentelemetry, envoyFileAccessLog and prometheus providers are in force; other providers have no effect yet"})
	r.in(k, "defaultProviders", "tracing[]", "metrics[]", "accessLogging[]")
	r.add(k, "accessLogFile", InForce, "without Telemetry access logging, every sidecar logs each request and connection to this file (/dev/stdout: the proxy's log)")
	r.add(k, "accessLogEncoding", InForce, "")
	r.add(k, "accessLogFormat", Partly, "a TEXT format (Envoy command operators) is in force; with JSON encoding the keys are Istio's default JSON access-log keys")
	r.whole(k, "enableTracing", NotInForce, "tracing follows Telemetry and defaultProviders.tracing")
	r.in(k, "defaultConfig.tracing", "sampling", "maxPathTagLength", "customTags{}.literal.value", "customTags{}.header.name",
		"customTags{}.header.defaultValue", "customTags{}.environment.name", "customTags{}.environment.defaultValue")
	fields := (&meshv1alpha1.MeshConfig{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		switch name := fields.Get(i).JSONName(); name {
		case "rootNamespace", "connectTimeout", "outboundTrafficPolicy", "trustDomain", "defaultConfig", "extensionProviders", "enableAutoMtls", "trustDomainAliases", "pathNormalization", "localityLbSetting", "defaultHttpRetryPolicy",
			"defaultProviders", "accessLogFile", "accessLogEncoding", "accessLogFormat", "enableTracing":
		case "tcpKeepalive":
			r.whole(k, name, InForce, "every outbound cluster's upstream sockets, as a DestinationRule's connectionPool.tcp.tcpKeepalive (which overrides it attribute by attribute): "+keepaliveNote)
		default:
			r.whole(k, name, NotInForce, "this MeshConfig field is not in force yet: Trellis's default applies")
		}
	}
}
