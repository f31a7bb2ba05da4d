package translate

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

// normalizePaths sets a sidecar connection manager's path normalization
// from MeshConfig pathNormalization, as Istio's buildHTTPConnectionManager
// does on every connection manager it generates, inbound and outbound:
// the proxy normalizes the path before authorization and routing and
// forwards what it normalized, so a request is judged and served in one
// spelling. BASE (the default) is RFC 3986 normalization; MERGE_SLASHES
// adds merged slashes; DECODE_AND_MERGE_SLASHES also decodes %2F and %5C;
// NONE leaves the path as sent.
func (t *translation) normalizePaths(h *hcmv3.HttpConnectionManager) {
	h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_KEEP_UNCHANGED
	switch t.w.Mesh.GetPathNormalization().GetNormalization() {
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_NONE:
		h.NormalizePath = wrapperspb.Bool(false)
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES:
		h.NormalizePath = wrapperspb.Bool(true)
		h.MergeSlashes = true
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES:
		h.NormalizePath = wrapperspb.Bool(true)
		h.MergeSlashes = true
		h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	default: // BASE, DEFAULT
		h.NormalizePath = wrapperspb.Bool(true)
	}
}
