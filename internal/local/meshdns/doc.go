// Package meshdns is the authoritative DNS server of a local mesh in
// transparent mode: what kube-dns (CoreDNS's kubernetes plugin) is to a
// cluster. `trellis up --transparent` runs it in the node network namespace
// and points each pod's /etc/resolv.conf at it (see ResolvConf), so that an
// app resolving `reviews` or `reviews.shop.svc.cluster.local` gets the
// Service's virtual IP, which the pod's nftables capture then hands to its
// sidecar.
//
// It follows the Kubernetes DNS specification for Services
// (https://github.com/kubernetes/dns/blob/master/docs/specification.md):
// A and AAAA records for `<service>.<ns>.svc.<domain>` holding the cluster
// IPs, or the ready pod IPs for a headless Service. It serves only the mesh's
// domain: there is no outside world to recurse to (the node namespace has no
// route out), so it is authoritative for the domain and refuses the rest.
// Not served (yet): SRV records for named ports, pod records
// (`1-2-3-4.<ns>.pod.<domain>`), hostnames of headless pods, and reverse
// (PTR) lookups.
package meshdns
