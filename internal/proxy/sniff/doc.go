// Package sniff decides what protocol a client speaks on a port whose
// Service declares none (no http-/grpc-/tcp- name, no appProtocol), the way
// Envoy's http_inspector and tls_inspector listener filters do for Istio:
// by peeking at the first bytes the client sends, then handing the
// connection on with those bytes replayed (netio.ReplayPooled).
//
// Sniffing must never block a server-first protocol (MySQL, SMTP, FTP,
// PostgreSQL over some drivers, NATS): their clients send nothing until the
// server greets them, so a silent client is given a short timeout and then
// treated as opaque TCP. Istio once defaulted to 100ms and later to no
// timeout at all because a timeout misclassifies slow HTTP clients; the
// mesh's answer is that declared ports skip sniffing entirely, and only
// undeclared ones pay the (bounded) wait.
package sniff
