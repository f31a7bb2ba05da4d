package xdsresource

import (
	"strconv"
	"strings"
)

// TLS on the wire, as Istio configures it and the proxy honours it:
//
//   - mesh mTLS names the proxy's own identity by SDS: the certificate
//     "default" and the trust bundle "ROOTCA" (both delivered to the proxy
//     by its CA client, not by xDS);
//   - TLS origination to services outside the mesh (DestinationRule tls
//     SIMPLE or MUTUAL) names files, by Istio's SDS names
//     "file-cert:<cert>~<key>" and "file-root:<ca>", or inline file names;
//   - subject alt names are exact matches, of URI (spiffe://) or DNS SANs.
//
// Everything else a TLS context can say (inline keys, other SDS secrets,
// custom validators, CRLs, SPKI pins, TLS parameters) is refused: a
// security setting the proxy would not apply must NACK, not be ignored.

// Type names of the transport sockets the proxy implements.
const (
	upstreamTLSType   = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	downstreamTLSType = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	rawBufferType     = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
	rawBufferName     = "envoy.transport_sockets.raw_buffer"
)

// SDS secret names of the proxy's workload identity (Istio's).
const (
	SecretDefault  = "default" // the workload certificate
	SecretRootCA   = "ROOTCA"  // the mesh trust bundle
	fileCertPrefix = "file-cert:"
	fileRootPrefix = "file-root:"
	// FileRootSystem names the system's trust store.
	FileRootSystem = "file-root:system"
)

// UpstreamTLS is a cluster's TLS origination (UpstreamTlsContext).
type UpstreamTLS struct {
	// Mesh is Istio mutual TLS with the proxy's own identity: its
	// certificate (SDS default) and the mesh roots (SDS ROOTCA). The
	// proxy carries it through the destination pod's tunnel port.
	Mesh bool
	// CertFile and KeyFile are the client certificate presented (MUTUAL);
	// empty for none.
	CertFile, KeyFile string
	// CAFile holds the roots the server's chain must end in; SystemRoots
	// verifies against the system's instead (Istio's default when a
	// DestinationRule names no caCertificates). With neither (and not
	// Mesh) the chain is not verified, as in Envoy without a validation
	// context (insecureSkipVerify).
	CAFile      string
	SystemRoots bool
	// SANs are the subject alt names (URI or DNS, exact) of which the
	// server's certificate must have one; empty checks SNI as a host name
	// when there is one (outside the mesh), else only the chain.
	SANs []string
	SNI  string
	ALPN []string
	// CRLFile is a PEM file of certificate revocation lists (the
	// validation context's crl, a DestinationRule's caCrl): a server
	// certificate any of them revokes is refused, and each CA of the
	// verified chain must have one, as Envoy checks the whole chain.
	CRLFile string
}

// TLSMatch is one of a cluster's transport_socket_matches: hosts whose
// metadata match get TLS (nil: plaintext, raw_buffer).
type TLSMatch struct {
	Name string
	// TLSMode is the envoy.transport_socket_match metadata the match
	// asks for: "istio" for endpoints with a sidecar; "" matches any.
	TLSMode string
	TLS     *UpstreamTLS
}

// DownstreamTLS is a filter chain's TLS termination (DownstreamTlsContext):
// the proxy's own identity presented, a client certificate from the mesh
// required when RequireClientCert.
type DownstreamTLS struct {
	RequireClientCert bool
}

// TLSFor is the TLS of an upstream connection to a host whose tlsMode
// (filter metadata) is tlsMode: the first transport_socket_match that
// fits, else the cluster's transport_socket. nil is plaintext.
func (c *Cluster) TLSFor(tlsMode string) *UpstreamTLS {
	for i := range c.TLSMatches {
		if m := &c.TLSMatches[i]; m.TLSMode == "" || m.TLSMode == tlsMode {
			return m.TLS
		}
	}
	return c.TLS
}

// decodeTransportSocket reads a TransportSocket: the type of its config
// and the config itself. A raw_buffer socket returns typeName "".
func decodeTransportSocket(b []byte) (typeName string, value []byte, err error) {
	m := msg{b: b}
	name := ""
	for m.next() {
		switch m.num {
		case 1:
			name = m.str("name")
		case 3:
			ab, ok := m.bytes()
			if !ok {
				break
			}
			typeName, value, err = anyValue(ab)
			m.fail(err, "typed_config")
		}
	}
	if m.err != nil {
		return "", nil, m.err
	}
	if typeName == rawBufferType || typeName == "" && name == rawBufferName {
		return "", nil, nil
	}
	if typeName == "" {
		return "", nil, within(errorf("transport socket %q: %w", name, errNotSupported), "name")
	}
	return typeName, value, nil
}

// decodeUpstreamSocket reads a cluster's transport socket: nil for
// raw_buffer.
func decodeUpstreamSocket(b []byte) (*UpstreamTLS, error) {
	typeName, value, err := decodeTransportSocket(b)
	switch {
	case err != nil:
		return nil, err
	case typeName == "":
		return nil, nil
	case typeName != upstreamTLSType:
		return nil, within(errorf("%s: %w", typeName, errNotSupported), "typed_config")
	}
	u, err := decodeUpstreamTLS(value)
	if err != nil {
		return nil, within(err, "typed_config")
	}
	return u, nil
}

func decodeUpstreamTLS(b []byte) (*UpstreamTLS, error) {
	u := &UpstreamTLS{}
	m := msg{b: b, varints: 1<<3 | 1<<5 | 1<<6 | 1<<7}
	for m.next() {
		switch m.num {
		case 1:
			if cb, ok := m.bytes(); ok {
				m.fail(decodeCommonTLS(cb, u, nil), "common_tls_context")
			}
		case 2:
			u.SNI = m.str("sni")
		case 3:
			if m.bool() {
				m.fail(errNotSupported, "allow_renegotiation")
			}
		case 6:
			if m.bool() {
				m.fail(errNotSupported, "auto_host_sni")
			}
		case 7:
			if m.bool() {
				m.fail(errNotSupported, "auto_sni_san_validation")
			}
		}
	}
	if m.err != nil {
		return nil, m.err
	}
	switch {
	case u.Mesh && (u.CAFile != "" || u.CertFile != "" || u.SystemRoots):
		return nil, errorf("common_tls_context: mixes the workload identity (SDS %s/%s) with files: %w", SecretDefault, SecretRootCA, errNotSupported)
	case u.CRLFile != "" && u.Mesh:
		return nil, errorf("common_tls_context: a crl with the mesh roots: %w", errNotSupported)
	case u.CRLFile != "" && u.CAFile == "" && !u.SystemRoots:
		// Envoy refuses a CRL it has no trusted CA to check it with.
		return nil, errorf("common_tls_context: crl %s without a trusted CA to verify it", u.CRLFile)
	}
	return u, nil
}

// decodeDownstreamSocket reads a filter chain's transport socket: nil for
// raw_buffer.
func decodeDownstreamSocket(b []byte) (*DownstreamTLS, error) {
	typeName, value, err := decodeTransportSocket(b)
	switch {
	case err != nil:
		return nil, err
	case typeName == "":
		return nil, nil
	case typeName != downstreamTLSType:
		return nil, within(errorf("%s: %w", typeName, errNotSupported), "typed_config")
	}
	d := &DownstreamTLS{}
	var u UpstreamTLS
	m := msg{b: value, varints: 1<<7 | 1<<8 | 1<<9 | 1<<10 | 1<<11}
	for m.next() {
		switch m.num {
		case 1:
			if cb, ok := m.bytes(); ok {
				m.fail(decodeCommonTLS(cb, &u, d), "common_tls_context")
			}
		case 2:
			d.RequireClientCert = m.wrappedBool("require_client_certificate")
		case 3:
			if m.wrappedBool("require_sni") {
				m.fail(errNotSupported, "require_sni")
			}
		case 4:
			m.fail(errNotSupported, "session_ticket_keys")
		case 5:
			m.fail(errNotSupported, "session_ticket_keys_sds_secret_config")
		case 8:
			if m.enum() != 0 {
				m.fail(errNotSupported, "ocsp_staple_policy")
			}
		}
	}
	if m.err != nil {
		return nil, within(m.err, "typed_config")
	}
	// The proxy terminates mesh TLS only, with its own identity.
	if !u.Mesh || len(u.SANs) > 0 || u.CRLFile != "" {
		return nil, within(errorf("only the workload identity (SDS %q, validation %q) is supported on a listener: %w", SecretDefault, SecretRootCA, errNotSupported), "typed_config.common_tls_context")
	}
	return d, nil
}

// decodeCommonTLS reads a CommonTlsContext into u. down is set for a
// listener's context, where only the workload identity is accepted.
func decodeCommonTLS(b []byte, u *UpstreamTLS, down *DownstreamTLS) error {
	m := msg{b: b}
	certs := 0
	var cert, root string
	for m.next() {
		switch m.num {
		case 1:
			if pb, ok := m.bytes(); ok && len(pb) > 0 {
				m.fail(decodeTLSParams(pb), "tls_params")
			}
		case 2:
			cb, ok := m.bytes()
			if !ok {
				break
			}
			c, k, err := decodeTLSCertificate(cb)
			m.failIndex(err, "tls_certificates", certs)
			u.CertFile, u.KeyFile = c, k
			certs++
		case 3:
			if vb, ok := m.bytes(); ok {
				m.fail(decodeValidation(vb, u), "validation_context")
			}
		case 4:
			u.ALPN = append(u.ALPN, m.str("alpn_protocols"))
		case 6:
			sb, ok := m.bytes()
			if !ok {
				break
			}
			name, err := sdsName(sb)
			m.failIndex(err, "tls_certificate_sds_secret_configs", certs)
			cert = name
			certs++
		case 7:
			if sb, ok := m.bytes(); ok {
				name, err := sdsName(sb)
				m.fail(err, "validation_context_sds_secret_config")
				root = name
			}
		case 8:
			cb, ok := m.bytes()
			if !ok {
				break
			}
			c := msg{b: cb}
			for c.next() {
				switch c.num {
				case 1:
					if vb, ok := c.bytes(); ok {
						c.fail(decodeValidation(vb, u), "default_validation_context")
					}
				case 2:
					if sb, ok := c.bytes(); ok {
						name, err := sdsName(sb)
						c.fail(err, "validation_context_sds_secret_config")
						root = name
					}
				case 3, 4:
					c.fail(errNotSupported, "validation_context_certificate_provider")
				}
			}
			m.fail(c.err, "combined_validation_context")
		case 9, 11, 14:
			m.fail(errNotSupported, "tls_certificate_provider_instance")
		case 10, 12:
			m.fail(errNotSupported, "validation_context_certificate_provider_instance")
		case 13:
			m.fail(errNotSupported, "custom_handshaker")
		case 15:
			m.fail(errNotSupported, "key_log")
		case 16:
			m.fail(errNotSupported, "custom_tls_certificate_selector")
		}
	}
	if m.err != nil {
		return m.err
	}
	if certs > 1 {
		return within(errorf("one certificate at most: %w", errNotSupported), "tls_certificate_sds_secret_configs")
	}
	switch {
	case cert == SecretDefault:
		u.Mesh = true
	case strings.HasPrefix(cert, fileCertPrefix):
		c, k, ok := strings.Cut(strings.TrimPrefix(cert, fileCertPrefix), "~")
		if !ok || c == "" || k == "" {
			return within(errorf("%q: want file-cert:<cert>~<key>", cert), "tls_certificate_sds_secret_configs[0].name")
		}
		u.CertFile, u.KeyFile = c, k
	case cert != "":
		return within(errorf("SDS secret %q: only %q (the workload certificate) and file-cert: names are supported", cert, SecretDefault), "tls_certificate_sds_secret_configs[0].name")
	}
	switch {
	case root == SecretRootCA:
		if cert != SecretDefault && down == nil {
			return within(errorf("%q needs the workload certificate %q beside it", SecretRootCA, SecretDefault), "combined_validation_context")
		}
	case root == FileRootSystem:
		u.SystemRoots = true
	case strings.HasPrefix(root, fileRootPrefix):
		u.CAFile = strings.TrimPrefix(root, fileRootPrefix)
	case root != "":
		return within(errorf("SDS secret %q: only %q (the mesh roots) and file-root: names are supported", root, SecretRootCA), "combined_validation_context.validation_context_sds_secret_config.name")
	case u.Mesh:
		return within(errorf("the workload certificate needs the mesh roots %q to verify the peer", SecretRootCA), "combined_validation_context")
	}
	return nil
}

// decodeTLSParams accepts TLS parameters that the proxy's TLS 1.3-only
// mesh settings satisfy: none other than protocol versions.
func decodeTLSParams(b []byte) error {
	m := msg{b: b, varints: 1<<1 | 1<<2}
	for m.next() {
		switch m.num {
		case 1, 2:
			// Versions: the proxy speaks TLS 1.2 and 1.3 outside the
			// mesh and 1.3 inside it, which any setting Istio sends allows.
		case 3:
			m.fail(errNotSupported, "cipher_suites")
		case 4:
			m.fail(errNotSupported, "ecdh_curves")
		case 5:
			m.fail(errNotSupported, "signature_algorithms")
		}
	}
	return m.err
}

// decodeTLSCertificate reads an inline TlsCertificate: file names only,
// never key material in the config (it would show in config dumps).
func decodeTLSCertificate(b []byte) (cert, key string, err error) {
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			if db, ok := m.bytes(); ok {
				var e error
				cert, e = dataSourceFile(db)
				m.fail(e, "certificate_chain")
			}
		case 2:
			if db, ok := m.bytes(); ok {
				var e error
				key, e = dataSourceFile(db)
				m.fail(e, "private_key")
			}
		default:
			if m.num != 0 {
				m.fail(errNotSupported, "field "+strconv.Itoa(int(m.num)))
			}
		}
	}
	if m.err == nil && (cert == "" || key == "") {
		return "", "", errorf("needs certificate_chain and private_key files")
	}
	return cert, key, m.err
}

// decodeValidation reads a CertificateValidationContext: a CA file and
// exact subject alt names.
func decodeValidation(b []byte, u *UpstreamTLS) error {
	m := msg{b: b, varints: 1<<6 | 1<<8 | 1<<10 | 1<<14 | 1<<18}
	sans := 0
	for m.next() {
		switch m.num {
		case 1:
			if db, ok := m.bytes(); ok {
				f, err := dataSourceFile(db)
				m.fail(err, "trusted_ca")
				u.CAFile = f
			}
		case 9:
			if sb, ok := m.bytes(); ok {
				s, err := exactMatch(sb)
				m.failIndex(err, "match_subject_alt_names", sans)
				u.SANs = append(u.SANs, s)
				sans++
			}
		case 15:
			sb, ok := m.bytes()
			if !ok {
				break
			}
			s := msg{b: sb, varints: 1 << 1}
			san := ""
			for s.next() {
				switch s.num {
				case 1:
					if t := s.enum(); t != 2 && t != 3 {
						s.fail(errorf("SAN type %d: only DNS and URI are supported", t), "san_type")
					}
				case 2:
					if mb, ok := s.bytes(); ok {
						var err error
						san, err = exactMatch(mb)
						s.fail(err, "matcher")
					}
				case 3:
					s.fail(errNotSupported, "oid")
				}
			}
			m.failIndex(s.err, "match_typed_subject_alt_names", sans)
			u.SANs = append(u.SANs, san)
			sans++
		case 2:
			m.fail(errNotSupported, "verify_certificate_hash")
		case 3:
			m.fail(errNotSupported, "verify_certificate_spki")
		case 6:
			if m.bool() {
				m.fail(errNotSupported, "require_signed_certificate_timestamp")
			}
		case 7:
			if db, ok := m.bytes(); ok {
				f, err := dataSourceFile(db)
				m.fail(err, "crl")
				u.CRLFile = f
			}
		case 8:
			if m.bool() {
				m.fail(errNotSupported, "allow_expired_certificate")
			}
		case 10:
			if m.enum() != 0 {
				m.fail(errNotSupported, "trust_chain_verification")
			}
		case 12:
			m.fail(errNotSupported, "custom_validator_config")
		case 13:
			m.fail(errNotSupported, "ca_certificate_provider_instance")
		case 17:
			u.SystemRoots = true
		}
	}
	return m.err
}

// exactMatch reads a StringMatcher that must be exact.
func exactMatch(b []byte) (string, error) {
	m := msg{b: b}
	s, exact := "", false
	for m.next() {
		switch m.num {
		case 1:
			s, exact = m.str("exact"), true
		case 2, 3, 5, 7, 8:
			m.fail(errorf("only exact subject alt names are supported"), "match_pattern")
		}
	}
	if m.err == nil && (!exact || s == "") {
		return "", errorf("exact: %w", errRequired)
	}
	return s, m.err
}

// dataSourceFile reads a DataSource that names a file.
func dataSourceFile(b []byte) (string, error) {
	m := msg{b: b}
	f := ""
	for m.next() {
		switch m.num {
		case 1:
			f = m.str("filename")
		case 2, 3:
			m.fail(errorf("inline certificates and keys are not supported: name a file"), "specifier")
		case 4:
			m.fail(errNotSupported, "environment_variable")
		}
	}
	if m.err == nil && f == "" {
		return "", errorf("filename: %w", errRequired)
	}
	return f, m.err
}

// sdsName reads an SdsSecretConfig's name; the secret itself comes from
// the proxy (ADS is the only sds_config Istio sends, and the proxy serves
// these names from its identity and the files named).
func sdsName(b []byte) (string, error) {
	m := msg{b: b}
	name := ""
	for m.next() {
		if m.num == 1 {
			name = m.str("name")
		}
	}
	if m.err == nil && name == "" {
		return "", errorf("name: %w", errRequired)
	}
	return name, m.err
}

// decodeSocketMatch reads one transport_socket_matches entry.
func decodeSocketMatch(b []byte) (TLSMatch, error) {
	var tm TLSMatch
	m := msg{b: b}
	for m.next() {
		switch m.num {
		case 1:
			tm.Name = m.str("name")
		case 2:
			sb, ok := m.bytes()
			if !ok {
				break
			}
			var bad string
			m.fail(structStrings(sb, func(k, v []byte) {
				if string(k) == "tlsMode" {
					tm.TLSMode = string(v)
				} else if bad == "" {
					bad = string(k)
				}
			}), "match")
			if bad != "" {
				m.fail(errorf("matching on %q: only tlsMode is supported", bad), "match")
			}
		case 3:
			if sb, ok := m.bytes(); ok {
				u, err := decodeUpstreamSocket(sb)
				m.fail(err, "transport_socket")
				tm.TLS = u
			}
		}
	}
	return tm, m.err
}

// checkChainTLS accepts TLS on filter chains where the proxy applies it:
// inbound, with the chain matching TLS connections only. Elsewhere a
// transport socket or protocol match would be a criterion the proxy's
// outbound chains never look at.
func checkChainTLS(l *Listener) error {
	for i := range l.FilterChains {
		fc := &l.FilterChains[i]
		switch {
		case len(fc.ApplicationProtocols) > 0 && fc.TransportProtocol != "tls":
			return withinIndex(errorf("application_protocols are supported on chains matching transport_protocol tls only: %w", errNotSupported), "filter_chains", i)
		case fc.TLS == nil && fc.TransportProtocol == "":
		case l.Direction != Inbound:
			return withinIndex(errorf("transport_socket and transport_protocol are supported on inbound listeners only: %w", errNotSupported), "filter_chains", i)
		case fc.TLS != nil && fc.TransportProtocol != "tls":
			return withinIndex(errorf("a chain that terminates TLS must match transport_protocol tls"), "filter_chains", i)
		}
	}
	return nil
}
