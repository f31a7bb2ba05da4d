// Package identity is the control plane's side of workload identity: SPIFFE
// IDs, the mesh CA (a self-signed root kept in a directory, or a plug-in
// intermediate in Istio's file layout), the credentials that authenticate a
// certificate request, and Istio's CA gRPC service
// (istio.v1.auth.IstioCertificateService) over them.
//
// The identity in an issued certificate always comes from how the caller
// authenticated (a per-pod credential, or the mesh certificate it already
// holds), never from the CSR or request metadata: the CSR contributes only
// its public key.
//
// The proxy never links this package (it needs grpc and Istio's generated
// types); its side is internal/proxy/certs.
package identity
