#!/usr/bin/env bash
# Sidecar data-plane benchmark, Istio's methodology on loopback (see
# docs/performance.md, "Sidecar"):
#
#   (a) direct    fortio client -> fortio server
#   (b) trellis   client -> trellis-proxy (client pod, :15001) -> HTTP/1.1
#                 CONNECT tunnel -> trellis-proxy (server pod, :15008) -> server;
#                 the plain route: its VirtualService turns retries off
#                 (attempts 0), and its DestinationRule has no traffic policy
#  (b2) trellis-mtls  the same with identities: two more trellis-proxy
#                 processes with certificates from the mesh CA (--root-cert,
#                 --credential-file), the tunnel inside mTLS (TLS 1.3,
#                 X25519MLKEM768), to a second fortio server of the same kind
#                 (retries off too, so that it differs from (b) by mTLS only)
#  (b3) trellis-resilient  (b)'s path through two more trellis-proxy
#                 processes to a third fortio server, whose service keeps
#                 Istio's default retry policy (no retries in its
#                 VirtualService: 2 retries on connect-failure, refused-stream,
#                 unavailable, cancelled, retriable-status-codes) and has a
#                 DestinationRule with outlierDetection (consecutive5xxErrors 5,
#                 interval 10s, baseEjectionTime 30s); nothing fails, so this is
#                 what retries and outlier detection cost when not needed
#  (bn) trellis-notel  (b)'s path through two more trellis-proxy processes
#                 to a fourth fortio server, with no telemetry: a Telemetry
#                 for both workloads names a metrics provider that is not
#                 Prometheus (so no istio.stats filter, Istio's way of turning
#                 metrics off), and no tracing or access log
#  (bt) trellis-traced  the same to a fifth fortio server, with metrics on (the
#                 default) and tracing at 1% (a Telemetry for both workloads)
#                 over OTLP/gRPC to bench/otlpsink, which discards the spans;
#                 (b) itself is the default: metrics on, no tracing
#   (c) haproxy   client -> haproxy -> haproxy -> server
#   (d) nginx     client -> nginx -> nginx -> server
#
# Each pair is two separate processes (two sidecars), reverse proxies with
# keep-alive upstreams. Load per scenario, one after the other:
#   fortio load -qps 1000 -c 16 -uniform -nocatchup -keepalive -r 0.00001
#               -t DURATION -payload-size 1024      (1 KB up, echoed back)
# then a closed loop (-qps 0 -c 16 -t MAXDURATION) for max throughput.
# Reported: p50/p90/p99 and the latency each pair adds over direct; CPU per
# proxy process as vCPU per 1,000 rps (utime+stime from /proc/PID/stat over
# the 1,000 qps run, all of nginx's processes); VmRSS idle (before any load)
# and right after the 1,000 qps run, max VmRSS sampled during it, VmHWM;
# max throughput; trellis/haproxy ratios; trellis-mtls/trellis ratios and
# the mTLS handshakes per second during the 1,000 qps run (the sidecars'
# ssl.handshake counters on /stats); trellis-resilient/trellis ratios of CPU
# per request for each sidecar, of added p50 and p99 and of max throughput,
# each round, and the median CPU ratios over the rounds (also the client's
# ratio over the server's: the server sidecars do the same work in both, so
# this is the client's extra cost net of drift); telemetry: trellis /
# trellis-notel (metrics on / none) and trellis-traced / trellis-notel
# (metrics + 1% tracing / none) of CPU per request for each sidecar and of
# added p50, each round, their medians, and each telemetry sidecar's RSS
# (sampled peak, VmHWM) in its 1,000 qps run. Before measuring, the script
# checks each client sidecar's decoded config (/config_dump): (b3)'s route
# has 2 retries and its cluster outlier detection, (b)'s neither; (b) and
# (bt) have istio.stats, (bn) not; only (bt) traces, at 1%.
#
# The control plane is bench/meshcp: `trellis controlplane` (the same
# controlplane.Start, CA in memory) that also writes a per-pod credential
# for each mTLS sidecar, as `trellis up` hands its pods one.
#
# Usage: bench/sidecar.sh [DURATION [MAXDURATION]]     defaults 30s 10s
#   ROUNDS=n         measure trellis, trellis-mtls, trellis-resilient,
#                    trellis-notel and trellis-traced n times, alternating
#                    (default 1), to tell their differences from drift
#   AA=1             give (b3) (b)'s plain config (an A/A check: how far two
#                    pairs of one config differ here)
#   CERT_TTL=d       the mTLS sidecars' certificate lifetime (default 24h);
#                    e.g. 5s measures them while they rotate every 1-2 s
#   PROFILE_DIR=dir  also profiles the client sidecar under the (b), (b2) and
#                    (b3) loads: CPU (10 s), heap and allocs, as `go tool pprof
#                    -top` text (mtls-* for b2, resilient-* for b3, notel-*
#                    for bn, traced-* for bt), and the server sidecars' CPU
#   CAPTURE_DIR=dir  also captures loopback traffic (tcpdump, as root) for 8 s
#                    of an extra 1,000 qps load of (b) and of (c) after the
#                    measured runs, and times each leg and hop with bench/legs:
#                    {trellis,haproxy}.pcap and {trellis,haproxy}-legs.txt
#   OUT_DIR=dir      keep fortio JSON and proxy logs there (default: a temp dir)
#
# Tools: fortio (go install fortio.org/fortio@v1.68.2), Debian haproxy, nginx,
# jq, curl, bc; installed here when missing (apt needs root). Not run in CI.
# Every address is in 127.77.48.0/24; every wait and load run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-30s}
MAXDURATION=${2:-10s}
QPS=1000
CONC=16
NET=127.77.48
APP=$NET.2:9080   # fortio server = the server pod's app
CLIENT_POD=$NET.1 # client sidecar
SERVER_POD=$NET.2 # server sidecar (same pod IP as the app)
APP2=$NET.4:9080         # the mTLS pair's app: a second fortio server
MTLS_CLIENT_POD=$NET.3   # mTLS client sidecar
MTLS_SERVER_POD=$NET.4   # mTLS server sidecar (same pod IP as APP2)
APP3=$NET.6:9080         # the resilient pair's app: a third fortio server
RES_CLIENT_POD=$NET.5    # resilient client sidecar (retries, outlier detection)
RES_SERVER_POD=$NET.6    # resilient server sidecar (same pod IP as APP3)
APP4=$NET.8:9080         # the no-telemetry pair's app
NOTEL_CLIENT_POD=$NET.7  # no-telemetry client sidecar
NOTEL_SERVER_POD=$NET.8  # no-telemetry server sidecar (same pod IP as APP4)
APP5=$NET.10:9080        # the traced pair's app
TRACED_CLIENT_POD=$NET.9 # traced client sidecar (metrics + tracing at 1%)
TRACED_SERVER_POD=$NET.10 # traced server sidecar (same pod IP as APP5)
OTLP=$NET.101:4317       # bench/otlpsink: the OTLP/gRPC collector
XDS=$NET.100:15010
SECURE_XDS=$NET.100:15012 # xDS and the CA over TLS
ROUNDS=${ROUNDS:-1}
CERT_TTL=${CERT_TTL:-24h}
HA1=$NET.11:8080 HA2=$NET.12:8080
NG1=$NET.21:8080 NG2=$NET.22:8080

# --- tools -------------------------------------------------------------------
GOBIN=$(go env GOPATH)/bin
FORTIO=$GOBIN/fortio
if ! [ -x "$FORTIO" ] || ! "$FORTIO" version 2>/dev/null | grep -q '^1\.68\.2'; then
	go install fortio.org/fortio@v1.68.2
fi
missing=()
for t in haproxy nginx jq curl bc; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

OUT=${OUT_DIR:-$(mktemp -d /tmp/trellis-bench.XXXXXX)}
mkdir -p "$OUT"
echo "results and logs in $OUT"
go build -o "$OUT/trellis-proxy" ./cmd/trellis-proxy
go build -o "$OUT/meshcp" ./bench/meshcp
go build -o "$OUT/otlpsink" ./bench/otlpsink

# --- processes ---------------------------------------------------------------
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT

# wait_http URL [curl args...]: up to 10 s for a 200.
wait_http() {
	local url=$1
	shift
	for _ in $(seq 100); do
		if [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$@" "$url")" = 200 ]; then return 0; fi
		sleep 0.1
	done
	echo "no 200 from $url $*" >&2
	exit 1
}

# stat_of POD NAME: a counter from the sidecar's /stats (0 when absent).
stat_of() {
	curl -s -m 5 "http://$1:15000/stats" | awk -F': ' -v n="$2" '$1 == n {v = $2} END {print v + 0}'
}

"$FORTIO" server -http-port "$APP" -grpc-port disabled -redirect-port disabled \
	-tcp-port disabled -udp-port disabled >"$OUT/app.log" 2>&1 &
PIDS+=($!)
"$FORTIO" server -http-port "$APP2" -grpc-port disabled -redirect-port disabled \
	-tcp-port disabled -udp-port disabled >"$OUT/app2.log" 2>&1 &
PIDS+=($!)
"$FORTIO" server -http-port "$APP3" -grpc-port disabled -redirect-port disabled \
	-tcp-port disabled -udp-port disabled >"$OUT/app3.log" 2>&1 &
PIDS+=($!)
for a in "$APP4" "$APP5"; do
	"$FORTIO" server -http-port "$a" -grpc-port disabled -redirect-port disabled \
		-tcp-port disabled -udp-port disabled >"$OUT/app-$a.log" 2>&1 &
	PIDS+=($!)
done
"$OUT/otlpsink" --listen "$OTLP" >"$OUT/otlpsink.log" 2>&1 &
PIDS+=($!)
wait_http "http://$APP/echo"
wait_http "http://$APP2/echo"
wait_http "http://$APP3/echo"
wait_http "http://$APP4/echo"
wait_http "http://$APP5/echo"

# Trellis: a control plane and the sidecars. reviews (b) and ratings (b2)
# turn retries off (attempts 0: no retry policy on the route, as before
# retries existed), so that they measure the plain route; details (b3)
# keeps Istio's default retry policy (its VirtualService sets no retries)
# and adds outlier detection, whose cost per request (b3) measures against (b).
# AA=1 gives details (b)'s plain config instead, an A/A check of how far
# two pairs of the same config differ on this machine.
DETAILS_POLICY='trafficPolicy: {outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}'
DETAILS_RETRIES= WANT_RETRIES='[2]' WANT_OUTLIER='[5]'
if [ "${AA:-0}" = 1 ]; then
	DETAILS_POLICY='# A/A: no traffic policy' DETAILS_RETRIES=', retries: {attempts: 0}' WANT_RETRIES='[null]' WANT_OUTLIER='[null]'
fi
mkdir -p "$OUT/mesh"
cat >"$OUT/mesh/mesh.yaml" <<EOF
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec: {address: $SERVER_POD, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}], retries: {attempts: 0}}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1}
spec: {address: $MTLS_SERVER_POD, serviceAccount: ratings, labels: {app: ratings, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings, subset: v1}}], retries: {attempts: 0}}]
---
apiVersion: v1
kind: Service
metadata: {name: details}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: details-v1}
spec: {address: $RES_SERVER_POD, labels: {app: details, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: details}
spec:
  host: details
  $DETAILS_POLICY
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http: [{route: [{destination: {host: details, subset: v1}}]$DETAILS_RETRIES}]
---
# Telemetry pairs (bn, bt): an OTLP collector named in MeshConfig (no
# default providers: (b)'s pairs stay as they were, metrics on, no tracing),
# and per-workload Telemetry selecting each pair's client and server by a
# bench-telemetry label.
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: otel
      opentelemetry: {service: otel-collector.istio-system.svc.cluster.local, port: 4317}
---
apiVersion: v1
kind: Service
metadata: {name: otel-collector, namespace: istio-system}
spec:
  selector: {app: otel-collector}
  ports: [{name: grpc-otlp, port: 4317}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: otel-collector, namespace: istio-system}
spec: {address: ${OTLP%:*}, labels: {app: otel-collector}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: notel, namespace: default}
spec:
  selector: {matchLabels: {bench-telemetry: none}}
  # A metrics provider that is not Prometheus: no istio.stats filter.
  metrics: [{providers: [{name: otel}]}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: traced, namespace: default}
spec:
  selector: {matchLabels: {bench-telemetry: traced}}
  tracing: [{providers: [{name: otel}], randomSamplingPercentage: 1}]
EOF
for svc in notel traced; do
	case $svc in notel) pod=$NOTEL_SERVER_POD ;; traced) pod=$TRACED_SERVER_POD ;; esac
	cat >>"$OUT/mesh/mesh.yaml" <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: $svc}
spec:
  selector: {app: $svc}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: $svc-v1}
spec: {address: $pod, labels: {app: $svc, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: $svc}
spec:
  host: $svc
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: $svc}
spec:
  hosts: [$svc]
  http: [{route: [{destination: {host: $svc, subset: v1}}], retries: {attempts: 0}}]
EOF
done
rm -rf "$OUT/ca"
"$OUT/meshcp" --config "$OUT/mesh" --xds-address "$XDS" --secure-xds-address "$SECURE_XDS" \
	--out "$OUT/ca" --identity default/ratings --identity default/sleep-mtls >"$OUT/controlplane.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -e "$OUT/ca/ready" ] && break; sleep 0.1; done
[ -e "$OUT/ca/ready" ] || { echo "the control plane wrote no credentials: $(cat "$OUT/controlplane.log")" >&2; exit 1; }
"$OUT/trellis-proxy" --xds "$XDS" --pod-ip "$SERVER_POD" --pod-name reviews-v1 --namespace default \
	--labels app=reviews,version=v1 --mode NONE --log-level warn >"$OUT/proxy-server.log" 2>&1 &
TR2=$!
PIDS+=("$TR2")
"$OUT/trellis-proxy" --xds "$XDS" --pod-ip "$CLIENT_POD" --pod-name sleep --namespace default \
	--labels app=sleep --mode NONE --log-level warn >"$OUT/proxy-client.log" 2>&1 &
TR1=$!
PIDS+=("$TR1")
# The mTLS pair: each proxy gets its certificate (CERT_TTL, 24 h by default)
# from the CA with its pod's credential and speaks xDS over mTLS.
"$OUT/trellis-proxy" --xds "$SECURE_XDS" --root-cert "$OUT/ca/root-cert.pem" \
	--credential-file "$OUT/ca/default.ratings.credential" --service-account ratings --cert-ttl "$CERT_TTL" \
	--pod-ip "$MTLS_SERVER_POD" --pod-name ratings-v1 --namespace default \
	--labels app=ratings,version=v1 --mode NONE --log-level warn >"$OUT/proxy-mtls-server.log" 2>&1 &
TM2=$!
PIDS+=("$TM2")
"$OUT/trellis-proxy" --xds "$SECURE_XDS" --root-cert "$OUT/ca/root-cert.pem" \
	--credential-file "$OUT/ca/default.sleep-mtls.credential" --service-account sleep-mtls --cert-ttl "$CERT_TTL" \
	--pod-ip "$MTLS_CLIENT_POD" --pod-name sleep-mtls --namespace default \
	--labels app=sleep-mtls --mode NONE --log-level warn >"$OUT/proxy-mtls-client.log" 2>&1 &
TM1=$!
PIDS+=("$TM1")
# The resilient pair: plaintext, as (b).
"$OUT/trellis-proxy" --xds "$XDS" --pod-ip "$RES_SERVER_POD" --pod-name details-v1 --namespace default \
	--labels app=details,version=v1 --mode NONE --log-level warn >"$OUT/proxy-res-server.log" 2>&1 &
TD2=$!
PIDS+=("$TD2")
"$OUT/trellis-proxy" --xds "$XDS" --pod-ip "$RES_CLIENT_POD" --pod-name sleep-res --namespace default \
	--labels app=sleep-res --mode NONE --log-level warn >"$OUT/proxy-res-client.log" 2>&1 &
TD1=$!
PIDS+=("$TD1")
# The telemetry pairs: plaintext, as (b), with retries off as (b).
"$OUT/trellis-proxy" --xds "$XDS" --pod-ip "$NOTEL_SERVER_POD" --pod-name notel-v1 --namespace default \
	--labels app=notel,version=v1,bench-telemetry=none --mode NONE --log-level warn >"$OUT/proxy-notel-server.log" 2>&1 &
TN2=$!
PIDS+=("$TN2")
"$OUT/trellis-proxy" --xds "$XDS" --pod-ip "$NOTEL_CLIENT_POD" --pod-name sleep-notel --namespace default \
	--labels app=sleep-notel,bench-telemetry=none --mode NONE --log-level warn >"$OUT/proxy-notel-client.log" 2>&1 &
TN1=$!
PIDS+=("$TN1")
"$OUT/trellis-proxy" --xds "$XDS" --pod-ip "$TRACED_SERVER_POD" --pod-name traced-v1 --namespace default \
	--labels app=traced,version=v1,bench-telemetry=traced --mode NONE --log-level warn >"$OUT/proxy-traced-server.log" 2>&1 &
TT2=$!
PIDS+=("$TT2")
"$OUT/trellis-proxy" --xds "$XDS" --pod-ip "$TRACED_CLIENT_POD" --pod-name sleep-traced --namespace default \
	--labels app=sleep-traced,bench-telemetry=traced --mode NONE --log-level warn >"$OUT/proxy-traced-client.log" 2>&1 &
TT1=$!
PIDS+=("$TT1")

# haproxy pair: two processes, 2 threads each (as GOMAXPROCS=2 here).
haproxy_cfg() { # listen upstream
	cat <<EOF
global
	nbthread 2
	maxconn 4096
defaults
	mode http
	option http-keep-alive
	http-reuse always
	timeout connect 5s
	timeout client 60s
	timeout server 60s
	timeout http-keep-alive 60s
frontend in
	bind $1
	default_backend out
backend out
	server app $2
EOF
}
haproxy_cfg "$HA1" "$HA2" >"$OUT/haproxy1.cfg"
haproxy_cfg "$HA2" "$APP" >"$OUT/haproxy2.cfg"
"$HAPROXY" -db -f "$OUT/haproxy1.cfg" >"$OUT/haproxy1.log" 2>&1 &
HA1PID=$!
PIDS+=("$HA1PID")
"$HAPROXY" -db -f "$OUT/haproxy2.cfg" >"$OUT/haproxy2.log" 2>&1 &
HA2PID=$!
PIDS+=("$HA2PID")

# nginx pair: two instances, 2 workers each, keep-alive upstreams.
nginx_cfg() { # name listen upstream
	local d=$OUT/$1
	mkdir -p "$d"
	cat <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $d/body;
	proxy_temp_path $d/proxy;
	fastcgi_temp_path $d/fastcgi;
	uwsgi_temp_path $d/uwsgi;
	scgi_temp_path $d/scgi;
	keepalive_requests 1000000;
	keepalive_timeout 300s;
	upstream up {
		server $3;
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen $2;
		location / {
			proxy_pass http://up;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$host;
		}
	}
}
EOF
}
nginx_cfg nginx1 "$NG1" "$NG2" >"$OUT/nginx1.conf"
nginx_cfg nginx2 "$NG2" "$APP" >"$OUT/nginx2.conf"
"$NGINX" -p "$OUT/nginx1" -c "$OUT/nginx1.conf" >"$OUT/nginx1.log" 2>&1 &
NG1PID=$!
PIDS+=("$NG1PID")
"$NGINX" -p "$OUT/nginx2" -c "$OUT/nginx2.conf" >"$OUT/nginx2.log" 2>&1 &
NG2PID=$!
PIDS+=("$NG2PID")

wait_http "http://$CLIENT_POD:15021/healthz/ready"
wait_http "http://$SERVER_POD:15021/healthz/ready"
wait_http "http://$CLIENT_POD:15001/echo" -H "Host: reviews:9080"
wait_http "http://$MTLS_CLIENT_POD:15021/healthz/ready"
wait_http "http://$MTLS_SERVER_POD:15021/healthz/ready"
wait_http "http://$MTLS_CLIENT_POD:15001/echo" -H "Host: ratings:9080"
# The mTLS pair really is in mTLS: the client counted a tunnel handshake.
if ! [ "$(stat_of "$MTLS_CLIENT_POD" tunnel.upstream.ssl.handshake)" -ge 1 ]; then
	echo "the mTLS client sidecar made no TLS handshake: is the pair in mTLS? $(curl -s "http://$MTLS_CLIENT_POD:15000/certs" | head -c 300)" >&2
	exit 1
fi
wait_http "http://$RES_CLIENT_POD:15021/healthz/ready"
wait_http "http://$RES_SERVER_POD:15021/healthz/ready"
wait_http "http://$RES_CLIENT_POD:15001/echo" -H "Host: details:9080"
# (b3) carries what it is meant to measure and (b) does not: the client
# sidecars' own config, as decoded (a retry policy on details' route,
# outlier detection on its subset cluster; none for reviews).
# route_field ADMIN SERVICE FIELD / cluster_field ADMIN SERVICE FIELD:
# the field of each of the service's routes / subset v1 cluster, as JSON.
route_field() {
	curl -s -m 5 "http://$1:15000/config_dump" |
		jq -c --arg s "$2." --arg f "$3" '[.routes.resources[].VirtualHosts[] | select(.Name | startswith($s)) | .Routes[].Action.Retry[$f]?]'
}
cluster_field() {
	curl -s -m 5 "http://$1:15000/config_dump" |
		jq -c --arg s "outbound|9080|v1|$2." --arg f "$3" '[.clusters.resources[] | select(.Name | startswith($s)) | .Outlier[$f]?]'
}
if [ "$(route_field "$RES_CLIENT_POD" details NumRetries)" != "$WANT_RETRIES" ] ||
	[ "$(cluster_field "$RES_CLIENT_POD" details Consecutive5xx)" != "$WANT_OUTLIER" ] ||
	[ "$(route_field "$CLIENT_POD" reviews NumRetries)" != '[null]' ] ||
	[ "$(cluster_field "$CLIENT_POD" reviews Consecutive5xx)" != '[null]' ]; then
	echo "the sidecars' config is not what (b) and (b3) measure: details retries $(route_field "$RES_CLIENT_POD" details NumRetries)" \
		"outlier $(cluster_field "$RES_CLIENT_POD" details Consecutive5xx) (want $WANT_RETRIES $WANT_OUTLIER); reviews retries" \
		"$(route_field "$CLIENT_POD" reviews NumRetries) outlier $(cluster_field "$CLIENT_POD" reviews Consecutive5xx) (want [null] [null])" >&2
	exit 1
fi
wait_http "http://$NOTEL_CLIENT_POD:15021/healthz/ready"
wait_http "http://$NOTEL_SERVER_POD:15021/healthz/ready"
wait_http "http://$NOTEL_CLIENT_POD:15001/echo" -H "Host: notel:9080"
wait_http "http://$TRACED_CLIENT_POD:15021/healthz/ready"
wait_http "http://$TRACED_SERVER_POD:15021/healthz/ready"
wait_http "http://$TRACED_CLIENT_POD:15001/echo" -H "Host: traced:9080"
# The telemetry pairs carry what they are meant to measure: over every HTTP
# chain of a sidecar's listeners, [istio.stats present, tracing sampling %].
telemetry_of() {
	curl -s -m 5 "http://$1:15000/config_dump" |
		jq -c '[.listeners.resources[] | .FilterChains[]? | .HTTP | select(. != null) | [(.Stats != null), (.Tracing.SamplingPercent // null)]] | unique'
}
for want in "$CLIENT_POD $SERVER_POD [[true,null]]" "$NOTEL_CLIENT_POD $NOTEL_SERVER_POD [[false,null]]" \
	"$TRACED_CLIENT_POD $TRACED_SERVER_POD [[true,1]]"; do
	read -r c sv w <<<"$want"
	for pod in "$c" "$sv"; do
		if [ "$(telemetry_of "$pod")" != "$w" ]; then
			echo "sidecar $pod's telemetry is not what it measures: $(telemetry_of "$pod") (want $w: [istio.stats on, tracing %])" >&2
			exit 1
		fi
	done
done
wait_http "http://$HA1/echo"
wait_http "http://$NG1/echo"

# --- measurement helpers -------------------------------------------------------
# pids_of PID: the process and its children (nginx's workers), in REPLY.
# This and kb run once a second during the load, so they use bash builtins
# only: a fork and exec costs a few milliseconds of CPU on this kind of VM,
# which would land in the tails being measured.
pids_of() {
	local f c
	REPLY=$1
	for f in /proc/"$1"/task/*/children; do
		c=
		read -r c <"$f" 2>/dev/null || true # false: the list ends without a newline
		if [ -n "$c" ]; then REPLY+=" $c"; fi
	done
	return 0
}
# ticks PID: utime+stime of the process tree, in clock ticks.
ticks() {
	local t=0 p
	pids_of "$1"
	for p in $REPLY; do
		t=$((t + $(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0)))
	done
	echo "$t"
}
# kb PID FIELD: a /proc/PID/status field (VmRSS, VmHWM) summed over the tree,
# in KiB, in REPLY and printed.
kbv() {
	local t=0 p k v rest
	pids_of "$1"
	for p in $REPLY; do
		while read -r k v rest; do
			if [ "$k" = "$2:" ]; then t=$((t + v)); fi
		done <"/proc/$p/status"
	done
	REPLY=$t
}
kb() { kbv "$@" && echo "$REPLY"; }
HZ=$(getconf CLK_TCK)
declare -A PROXY1=([trellis]=$TR1 [trellis-mtls]=$TM1 [trellis-resilient]=$TD1 [trellis-notel]=$TN1 [trellis-traced]=$TT1
	[haproxy]=$HA1PID [nginx]=$NG1PID)
declare -A PROXY2=([trellis]=$TR2 [trellis-mtls]=$TM2 [trellis-resilient]=$TD2 [trellis-notel]=$TN2 [trellis-traced]=$TT2
	[haproxy]=$HA2PID [nginx]=$NG2PID)
declare -A URL=([direct]="http://$APP/echo" [trellis]="http://$CLIENT_POD:15001/echo"
	[trellis-mtls]="http://$MTLS_CLIENT_POD:15001/echo" [trellis-resilient]="http://$RES_CLIENT_POD:15001/echo"
	[trellis-notel]="http://$NOTEL_CLIENT_POD:15001/echo" [trellis-traced]="http://$TRACED_CLIENT_POD:15001/echo"
	[haproxy]="http://$HA1/echo" [nginx]="http://$NG1/echo")
declare -A HOSTH=([trellis-mtls]="ratings:9080" [trellis-resilient]="details:9080" [trellis-notel]="notel:9080"
	[trellis-traced]="traced:9080")
declare -A ADMIN1=([trellis]=$CLIENT_POD [trellis-mtls]=$MTLS_CLIENT_POD [trellis-resilient]=$RES_CLIENT_POD
	[trellis-notel]=$NOTEL_CLIENT_POD [trellis-traced]=$TRACED_CLIENT_POD)
declare -A ADMIN2=([trellis]=$SERVER_POD [trellis-mtls]=$MTLS_SERVER_POD [trellis-resilient]=$RES_SERVER_POD
	[trellis-notel]=$NOTEL_SERVER_POD [trellis-traced]=$TRACED_SERVER_POD)
declare -A IDLE1 IDLE2

sleep 2 # let the sidecars settle after their first config
for s in trellis trellis-mtls trellis-resilient trellis-notel trellis-traced haproxy nginx; do
	IDLE1[$s]=$(kb "${PROXY1[$s]}" VmRSS)
	IDLE2[$s]=$(kb "${PROXY2[$s]}" VmRSS)
done

# load NAME QPS DURATION JSON: one bounded fortio run against a scenario.
load() {
	local s=$1 qps=$2 dur=$3 json=$4
	timeout 600 "$FORTIO" load -qps "$qps" -c $CONC -uniform -nocatchup -keepalive -r 0.00001 \
		-t "$dur" -payload-size 1024 -p "50,90,99,99.9" -H "Host: ${HOSTH[$s]:-reviews:9080}" \
		-json "$json" -quiet "${URL[$s]}" >"$json.log" 2>&1
}
pct() { jq -r --arg p "$2" '.DurationHistogram.Percentiles[] | select(.Percentile == ($p | tonumber)) | .Value * 1e6 | floor' "$1"; }
ok() { jq -r '(.RetCodes["200"] // 0)' "$1"; }
total() { jq -r '.DurationHistogram.Count' "$1"; }
qps() { jq -r '.ActualQPS | floor' "$1"; }

declare -A P50 P90 P99 P999 QPSA MAXQPS CPU1 CPU2 LOAD1 LOAD2 PEAK1 PEAK2 HWM1 HWM2 ERRS HS1 HS2 HSALL
# RUNS are the measured runs in order; a run is its scenario's name, with
# .N for the Nth round of the trellis scenarios (ROUNDS, alternating).
ROUND_SCENARIOS=(trellis trellis-mtls trellis-resilient trellis-notel trellis-traced)
RUNS=(direct "${ROUND_SCENARIOS[@]}")
for ((r = 2; r <= ROUNDS; r++)); do for s in "${ROUND_SCENARIOS[@]}"; do RUNS+=("$s.$r"); done; done
RUNS+=(haproxy nginx)
for k in "${RUNS[@]}"; do
	s=${k%%.*}
	echo "== $k: warm-up 3s, then ${QPS} qps for $DURATION"
	load "$s" $QPS 3s "$OUT/$k-warmup.json"
	p1=${PROXY1[$s]:-} p2=${PROXY2[$s]:-} a1=${ADMIN1[$s]:-} a2=${ADMIN2[$s]:-}
	if [ -n "$a1" ]; then
		h1=$(stat_of "$a1" tunnel.upstream.ssl.handshake) h2=$(stat_of "$a2" listener.tunnel.ssl.handshake)
	fi
	if [ -n "$p1" ]; then t1=$(ticks "$p1") t2=$(ticks "$p2"); fi
	start=$(date +%s.%N)
	if [ -n "$p1" ]; then
		# Sample RSS once a second while the load runs (bounded count).
		secs=${DURATION%s}
		# (read -t on a FIFO nobody writes is a sleep without a fork.)
		rm -f "$OUT/tick" && mkfifo "$OUT/tick"
		(exec {tick}<>"$OUT/tick"
		for ((i = 0; i < secs; i++)); do
			kbv "$p1" VmRSS
			r1=$REPLY
			kbv "$p2" VmRSS
			echo "$r1 $REPLY"
			read -r -t 1 -u "$tick" || true
		done) >"$OUT/$k-rss.txt" &
		sampler=$!
	fi
	load "$s" $QPS "$DURATION" "$OUT/$k.json"
	end=$(date +%s.%N)
	j=$OUT/$k.json
	P50[$k]=$(pct "$j" 50) P90[$k]=$(pct "$j" 90) P99[$k]=$(pct "$j" 99) P999[$k]=$(pct "$j" 99.9)
	QPSA[$k]=$(qps "$j")
	ERRS[$k]=$(($(total "$j") - $(ok "$j")))
	if [ -n "$p1" ]; then
		wait "$sampler" || true
		d1=$(($(ticks "$p1") - t1)) d2=$(($(ticks "$p2") - t2))
		el=$(echo "$end - $start" | bc -l)
		# vCPU per 1,000 rps = (cpu seconds / wall seconds) / (rps / 1000)
		CPU1[$k]=$(echo "scale=4; ($d1 / $HZ) / $el / (${QPSA[$k]} / 1000)" | bc -l)
		CPU2[$k]=$(echo "scale=4; ($d2 / $HZ) / $el / (${QPSA[$k]} / 1000)" | bc -l)
		LOAD1[$k]=$(kb "$p1" VmRSS) LOAD2[$k]=$(kb "$p2" VmRSS)
		PEAK1[$k]=$(awk 'BEGIN{m=0} $1>m{m=$1} END{print m}' "$OUT/$k-rss.txt")
		PEAK2[$k]=$(awk 'BEGIN{m=0} $2>m{m=$2} END{print m}' "$OUT/$k-rss.txt")
		HWM1[$k]=$(kb "$p1" VmHWM) HWM2[$k]=$(kb "$p2" VmHWM)
	fi
	if [ -n "$a1" ]; then
		# Tunnel handshakes during the 1,000 qps run, per second (client
		# side made, server side accepted), and since the proxies started.
		n1=$(stat_of "$a1" tunnel.upstream.ssl.handshake) n2=$(stat_of "$a2" listener.tunnel.ssl.handshake)
		HS1[$k]=$(echo "scale=3; ($n1 - $h1) / $el" | bc -l) HS2[$k]=$(echo "scale=3; ($n2 - $h2) / $el" | bc -l)
		HSALL[$k]="$n1/$n2"
	fi
	echo "== $k: closed loop (max throughput) for $MAXDURATION"
	load "$s" 0 "$MAXDURATION" "$OUT/$k-max.json"
	MAXQPS[$k]=$(qps "$OUT/$k-max.json")
	ERRS[$k]=$((ERRS[$k] + $(total "$OUT/$k-max.json") - $(ok "$OUT/$k-max.json")))
done

if [ -n "${PROFILE_DIR:-}" ]; then
	mkdir -p "$PROFILE_DIR"
	# Files: client-*, server-cpu for trellis; mtls-client-*, mtls-server-cpu
	# for trellis-mtls; resilient-client-*, resilient-server-cpu for
	# trellis-resilient; notel-*, traced-* for trellis-notel and
	# trellis-traced.
	declare -A PRE=([trellis]= [trellis-mtls]=mtls- [trellis-resilient]=resilient- [trellis-notel]=notel- [trellis-traced]=traced-)
	for s in "${ROUND_SCENARIOS[@]}"; do
		pre=${PRE[$s]}
		echo "== profiling the sidecars under ${QPS} qps ($s)"
		load "$s" $QPS 25s "$OUT/$s-profile.json" &
		lp=$!
		sleep 3
		admin=http://${ADMIN1[$s]}:15000/debug/pprof
		curl -s -m 30 -o "$PROFILE_DIR/${pre}client-cpu.pb.gz" "$admin/profile?seconds=10"
		curl -s -m 10 -o "$PROFILE_DIR/${pre}client-allocs.pb.gz" "$admin/allocs"
		curl -s -m 10 -o "$PROFILE_DIR/${pre}client-heap.pb.gz" "$admin/heap"
		curl -s -m 30 -o "$PROFILE_DIR/${pre}server-cpu.pb.gz" "http://${ADMIN2[$s]}:15000/debug/pprof/profile?seconds=8"
		wait "$lp" || true
		for f in client-cpu client-allocs client-heap server-cpu; do
			extra=()
			[ "$f" = client-allocs ] && extra=(-sample_index=alloc_space)
			go tool pprof -top -nodecount=40 "${extra[@]}" "$OUT/trellis-proxy" "$PROFILE_DIR/$pre$f.pb.gz" >"$PROFILE_DIR/$pre$f.txt" 2>&1 || true
			go tool pprof -top -cum -nodecount=40 "${extra[@]}" "$OUT/trellis-proxy" "$PROFILE_DIR/$pre$f.pb.gz" >"$PROFILE_DIR/$pre$f-cum.txt" 2>&1 || true
		done
	done
	echo "profiles in $PROFILE_DIR"
fi

# capture NAME LEG...: tcpdump 8 s of loopback traffic in the middle of a
# 1,000 qps load of NAME, then bench/legs with LEG... on it. The load is its
# own run because tcpdump copies every packet: in a measured run that work
# would land in the reported CPU and tails.
CAPTURED=()
capture() {
	local s=$1 pcap=$CAPTURE_DIR/$1.pcap log=$CAPTURE_DIR/$1-tcpdump.log legs=$CAPTURE_DIR/$1-legs.txt cap rc=0
	shift
	rm -f "$pcap" "$legs"
	echo "== capturing 8s of loopback traffic under ${QPS} qps ($s)"
	(sleep 3 && exec timeout 8 "$TCPDUMP" -i lo -s 160 -B 131072 -n -w "$pcap" net "$NET.0/24") >"$log" 2>&1 &
	cap=$!
	load "$s" $QPS 14s "$OUT/$s-capture.json"
	wait "$cap" || rc=$?
	# timeout stops tcpdump with SIGTERM (which flushes the file) and exits 124.
	if { [ "$rc" != 0 ] && [ "$rc" != 124 ]; } || ! [ -s "$pcap" ]; then
		echo "capture of $s failed (exit $rc; tcpdump needs root or CAP_NET_RAW): $(tail -n 3 "$log")"
		return 0
	fi
	grep -h 'captured\|dropped by kernel' "$log" | sed 's/^/  tcpdump: /' || true
	if "$OUT/legs" "$pcap" "$@" >"$legs" 2>&1; then
		CAPTURED+=("$s")
	else
		echo "bench/legs failed on $pcap: $(cat "$legs")"
	fi
}
if [ -n "${CAPTURE_DIR:-}" ]; then
	TCPDUMP=$(command -v tcpdump || echo /usr/sbin/tcpdump)
	if [ -x "$TCPDUMP" ]; then
		mkdir -p "$CAPTURE_DIR"
		go build -o "$OUT/legs" ./bench/legs
		capture trellis "$CLIENT_POD:15001=1" "$SERVER_POD:15008=2" "$APP=3"
		capture haproxy "$HA1=1" "$HA2=2" "$APP=3"
		echo "captures in $CAPTURE_DIR"
	else
		echo "CAPTURE_DIR is set but tcpdump is not installed: skipping the captures (apt-get install tcpdump)"
	fi
fi

# --- report ------------------------------------------------------------------
mb() { echo "scale=1; $1 / 1024" | bc -l; }
added() { echo $(($1 - $2)); }
echo
echo "Latency at $QPS qps, -c $CONC, 1 KB up and down, $DURATION (µs; added = minus direct)"
printf '%-19s %7s %7s %7s %7s | %9s %9s %9s | %6s %8s %6s\n' scenario p50 p90 p99 p99.9 '+p50' '+p90' '+p99' rps max-rps errors
for k in "${RUNS[@]}"; do
	printf '%-19s %7s %7s %7s %7s | %9s %9s %9s | %6s %8s %6s\n' "$k" "${P50[$k]}" "${P90[$k]}" "${P99[$k]}" "${P999[$k]}" \
		"$(added "${P50[$k]}" "${P50[direct]}")" "$(added "${P90[$k]}" "${P90[direct]}")" "$(added "${P99[$k]}" "${P99[direct]}")" \
		"${QPSA[$k]}" "${MAXQPS[$k]}" "${ERRS[$k]}"
done
echo
echo "Per proxy (1 = client side, 2 = server side): vCPU per 1,000 rps; RSS MB idle / right after load / peak sampled during load / VmHWM"
printf '%-19s %8s %8s | %-28s | %-28s\n' proxy cpu1 cpu2 'rss1 idle/after/peak/hwm' 'rss2 idle/after/peak/hwm'
for k in "${RUNS[@]}"; do
	s=${k%%.*}
	[ "$s" = direct ] && continue
	printf '%-19s %8s %8s | %-28s | %-28s\n' "$k" "${CPU1[$k]}" "${CPU2[$k]}" \
		"$(mb "${IDLE1[$s]}")/$(mb "${LOAD1[$k]}")/$(mb "${PEAK1[$k]}")/$(mb "${HWM1[$k]}")" \
		"$(mb "${IDLE2[$s]}")/$(mb "${LOAD2[$k]}")/$(mb "${PEAK2[$k]}")/$(mb "${HWM2[$k]}")"
done
echo
echo "Tunnel TLS handshakes per second during the ${QPS} qps run (client made / server accepted; total since start)"
for k in "${RUNS[@]}"; do
	[ -n "${HS1[$k]:-}" ] || continue
	printf '%-19s %8s %8s   (%s)\n' "$k" "${HS1[$k]}" "${HS2[$k]}" "${HSALL[$k]}"
done
echo
ratio() { echo "scale=2; $1 / $2" | bc -l; }
echo "Ratios (same run):"
for q in 50 90 99; do
	declare -n P=P$q
	tr=$(added "${P[trellis]}" "${P[direct]}") ha=$(added "${P[haproxy]}" "${P[direct]}") ng=$(added "${P[nginx]}" "${P[direct]}")
	echo "  added p$q: trellis / haproxy = $(ratio "$tr" "$ha")   trellis / nginx = $(ratio "$tr" "$ng")"
	unset -n P
done
echo "  max throughput: trellis / haproxy = $(ratio "${MAXQPS[trellis]}" "${MAXQPS[haproxy]}")   trellis / direct = $(ratio "${MAXQPS[trellis]}" "${MAXQPS[direct]}")"
echo "  vCPU per 1,000 rps, both proxies: trellis $(echo "${CPU1[trellis]} + ${CPU2[trellis]}" | bc -l), trellis-mtls $(echo "${CPU1[trellis-mtls]} + ${CPU2[trellis-mtls]}" | bc -l), trellis-resilient $(echo "${CPU1[trellis-resilient]} + ${CPU2[trellis-resilient]}" | bc -l), trellis-notel $(echo "${CPU1[trellis-notel]} + ${CPU2[trellis-notel]}" | bc -l), trellis-traced $(echo "${CPU1[trellis-traced]} + ${CPU2[trellis-traced]}" | bc -l), haproxy $(echo "${CPU1[haproxy]} + ${CPU2[haproxy]}" | bc -l), nginx $(echo "${CPU1[nginx]} + ${CPU2[nginx]}" | bc -l)"
echo
echo "mTLS mesh / plaintext mesh, each round (target: added p50 and p99 <= 1.2):"
for ((r = 1; r <= ROUNDS; r++)); do
	suf=
	[ "$r" -gt 1 ] && suf=.$r
	pt=trellis$suf mt=trellis-mtls$suf
	line="  round $r: added"
	for q in 50 90 99; do
		declare -n P=P$q
		line+=" p$q $(ratio "$(added "${P[$mt]}" "${P[direct]}")" "$(added "${P[$pt]}" "${P[direct]}")")"
		unset -n P
	done
	line+="; vCPU/1k rps client $(ratio "${CPU1[$mt]}" "${CPU1[$pt]}") server $(ratio "${CPU2[$mt]}" "${CPU2[$pt]}"); max throughput $(ratio "${MAXQPS[$mt]}" "${MAXQPS[$pt]}")"
	echo "$line"
done
ratio3() { echo "scale=3; $1 / $2" | bc -l; }
# median X...: the middle value (the mean of the two middle ones).
median() {
	printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
echo
if [ "${AA:-0}" = 1 ]; then
	echo "A/A: (b3) with (b)'s plain config / (b), each round (both plain: this is the pairs' own difference):"
else
	echo "Resilient route (default retries + outlier detection) / plain route, each round (target: vCPU/1k rps <= 1.05):"
fi
# The server sidecars do the same work in (b) and (b3) (inbound routes
# carry no retries or outlier detection), so their ratio is the drift
# between the two runs, and client ratio / server ratio the client's
# extra cost net of it.
R1=() R2=() RN=()
for ((r = 1; r <= ROUNDS; r++)); do
	suf=
	[ "$r" -gt 1 ] && suf=.$r
	pt=trellis$suf rt=trellis-resilient$suf
	# Three decimals: the target is a few percent.
	R1+=("$(ratio3 "${CPU1[$rt]}" "${CPU1[$pt]}")") R2+=("$(ratio3 "${CPU2[$rt]}" "${CPU2[$pt]}")")
	RN+=("$(ratio3 "${R1[-1]}" "${R2[-1]}")")
	line="  round $r: vCPU/1k rps client ${R1[-1]} server ${R2[-1]} client/server ${RN[-1]}; added"
	for q in 50 99; do
		declare -n P=P$q
		line+=" p$q $(ratio "$(added "${P[$rt]}" "${P[direct]}")" "$(added "${P[$pt]}" "${P[direct]}")")"
		unset -n P
	done
	line+="; max throughput $(ratio "${MAXQPS[$rt]}" "${MAXQPS[$pt]}")"
	echo "$line"
done
echo "  median of $ROUNDS: vCPU/1k rps client $(median "${R1[@]}") server $(median "${R2[@]}") client/server $(median "${RN[@]}")"
echo
# Telemetry: (b) is the default (metrics on), (bt) metrics + 1% tracing,
# both against (bn), no telemetry, in the same round.
echo "Telemetry / none, each round (target: vCPU/1k rps <= 1.10; m = metrics on (b), t = metrics + tracing at 1% (bt), n = none (bn)):"
M1=() M2=() T1=() T2=() MP=() TP=()
for ((r = 1; r <= ROUNDS; r++)); do
	suf=
	[ "$r" -gt 1 ] && suf=.$r
	nt=trellis-notel$suf mt=trellis$suf tt=trellis-traced$suf
	M1+=("$(ratio3 "${CPU1[$mt]}" "${CPU1[$nt]}")") M2+=("$(ratio3 "${CPU2[$mt]}" "${CPU2[$nt]}")")
	T1+=("$(ratio3 "${CPU1[$tt]}" "${CPU1[$nt]}")") T2+=("$(ratio3 "${CPU2[$tt]}" "${CPU2[$nt]}")")
	MP+=("$(ratio3 "$(added "${P50[$mt]}" "${P50[direct]}")" "$(added "${P50[$nt]}" "${P50[direct]}")")")
	TP+=("$(ratio3 "$(added "${P50[$tt]}" "${P50[direct]}")" "$(added "${P50[$nt]}" "${P50[direct]}")")")
	echo "  round $r: m/n vCPU/1k rps client ${M1[-1]} server ${M2[-1]} added p50 ${MP[-1]};" \
		"t/n client ${T1[-1]} server ${T2[-1]} added p50 ${TP[-1]}"
done
echo "  median of $ROUNDS: m/n client $(median "${M1[@]}") server $(median "${M2[@]}") added p50 $(median "${MP[@]}");" \
	"t/n client $(median "${T1[@]}") server $(median "${T2[@]}") added p50 $(median "${TP[@]}")"
echo "  RSS MB in the ${QPS} qps runs, client/server, sampled peak and VmHWM (budget with tracing at 1%: <= 25):"
for k in "${RUNS[@]}"; do
	case ${k%%.*} in trellis | trellis-notel | trellis-traced) ;; *) continue ;; esac
	printf '    %-19s peak %5s/%-5s hwm %5s/%-5s\n' "$k" "$(mb "${PEAK1[$k]}")" "$(mb "${PEAK2[$k]}")" "$(mb "${HWM1[$k]}")" "$(mb "${HWM2[$k]}")"
done
echo "  OTLP exports the sink received (all runs): $(awk '/ export bytes=/ {n++; sub(/.*bytes=/, ""); b += $1} END {printf "%d, %d bytes", n, b}' "$OUT/otlpsink.log")"
for s in "${CAPTURED[@]}"; do
	echo
	echo "Per leg and hop, $s, from 8 s of captured traffic (bench/legs; legs 1, 2, 3 = client -> proxy 1 -> proxy 2 -> app):"
	cat "$CAPTURE_DIR/$s-legs.txt"
done
