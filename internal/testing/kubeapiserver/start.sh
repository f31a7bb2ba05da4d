#!/bin/sh
# Starts etcd and the real kube-apiserver on loopback for integration tests, waits for /readyz, writes
# a kubeconfig for a static system:masters token and prints its path. Stop everything with
# stop.sh STATE_DIR. No controller-manager runs: a test that creates pods must create the
# namespace's default ServiceAccount itself.
#
#   start.sh STATE_DIR [BIN_DIR]
#
# STATE_DIR is created and holds the etcd data, keys, certs, logs, pid files and the kubeconfig;
# BIN_DIR holds kube-apiserver and kubectl from build.sh (default /var/cache/trellis-kube/v1.37.2).
# Ports are the first free ones at or above ETCD_PORT (default 23790) and APISERVER_PORT (26443).
set -eu

STATE=${1:?usage: start.sh STATE_DIR [BIN_DIR]}
BIN=${2:-/var/cache/trellis-kube/v1.37.2}
command -v etcd >/dev/null || { echo "etcd not found: apt-get install -y etcd-server" >&2; exit 1; }
[ -x "$BIN/kube-apiserver" ] || { echo "$BIN/kube-apiserver not found: run build.sh $BIN first" >&2; exit 1; }

mkdir -p "$STATE/etcd" "$STATE/certs"
STATE=$(cd "$STATE" && pwd)

# free_port N prints the first port >= N nobody listens on; racy, but only against other local
# test runs, which then fail loudly at bind time rather than talking to the wrong server.
free_port() {
	p=$1
	while ss -Htln "sport = :$p" | grep -q .; do p=$((p + 1)); done
	echo "$p"
}
ETCD_CLIENT=$(free_port "${ETCD_PORT:-23790}")
ETCD_PEER=$(free_port $((ETCD_CLIENT + 1)))
SECURE_PORT=$(free_port "${APISERVER_PORT:-26443}")

etcd --name trellis-test --data-dir "$STATE/etcd" \
	--listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
	--listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
	--initial-cluster "trellis-test=http://127.0.0.1:$ETCD_PEER" \
	>"$STATE/etcd.log" 2>&1 &
echo $! >"$STATE/etcd.pid"

openssl genrsa -out "$STATE/sa.key" 2048 2>/dev/null
TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
echo "$TOKEN,admin,admin,system:masters" >"$STATE/tokens.csv"

"$BIN/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$ETCD_CLIENT" \
	--service-account-key-file "$STATE/sa.key" \
	--service-account-signing-key-file "$STATE/sa.key" \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--token-auth-file "$STATE/tokens.csv" \
	--authorization-mode RBAC \
	--bind-address 127.0.0.1 \
	--secure-port "$SECURE_PORT" \
	--cert-dir "$STATE/certs" \
	--service-cluster-ip-range 10.96.0.0/16 \
	>"$STATE/kube-apiserver.log" 2>&1 &
echo $! >"$STATE/kube-apiserver.pid"

# Poll /readyz (it says ok only once etcd and every post-start hook are up) for up to 60 s.
i=0
until curl -fsk -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$SECURE_PORT/readyz" >/dev/null 2>&1; do
	i=$((i + 1))
	if [ "$i" -gt 120 ] || ! kill -0 "$(cat "$STATE/kube-apiserver.pid")" 2>/dev/null; then
		echo "kube-apiserver not ready on 127.0.0.1:$SECURE_PORT; see $STATE/kube-apiserver.log and $STATE/etcd.log" >&2
		"$(dirname "$0")/stop.sh" "$STATE"
		exit 1
	fi
	sleep 0.5
done

cat >"$STATE/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: trellis-test
  cluster:
    server: https://127.0.0.1:$SECURE_PORT
    certificate-authority: $STATE/certs/apiserver.crt
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: trellis-test
  context:
    cluster: trellis-test
    user: admin
current-context: trellis-test
KC
echo "$STATE/kubeconfig"
