package hcm

import "net/http"

// xfcc is X-Forwarded-Client-Cert, by which the sidecar tells the app who
// called it over mTLS.
const xfcc = "X-Forwarded-Client-Cert"

// forwardClientCert sets X-Forwarded-Client-Cert as Istio's sidecars do.
// Outbound it is Envoy's SANITIZE: whatever the app sent is dropped, so an
// app cannot claim an identity. Inbound it is APPEND_FORWARD with the
// subject, URI and DNS details: on a connection that arrived over mTLS the
// peer's element is appended (By our SPIFFE ID, the hash of the peer's
// certificate, its empty subject and its SPIFFE ID); on plaintext the
// header is dropped, so a forged one never reaches the app.
func (s *Server) forwardClientCert(h http.Header, c *Conn) {
	if s.cfg.Outbound || c == nil || c.PeerID == "" {
		delete(h, xfcc)
		return
	}
	by := ""
	if s.cfg.LocalID != nil {
		by = s.cfg.LocalID()
	}
	elem := `By=` + by + `;Hash=` + c.PeerCertHash + `;Subject="";URI=` + c.PeerID
	if prior := h.Get(xfcc); prior != "" {
		elem = prior + "," + elem
	}
	h[xfcc] = []string{elem}
}
