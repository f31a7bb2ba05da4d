package xdsresource_test

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	pathv3 "github.com/envoyproxy/go-control-plane/envoy/type/http/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
)

func pathListener(t *testing.T, h *hcmv3.HttpConnectionManager) []byte {
	t.Helper()
	h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}}
	h.HttpFilters = []*hcmv3.HttpFilter{router(t)}
	return marshal(t, &listenerv3.Listener{Name: "l", Address: addr("0.0.0.0", 1), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(t, h)}}}})
}

// TestPathNormalizationFields: the connection manager's path settings
// arrive decoded; unset is Envoy's default (no normalization, escaped
// slashes kept).
func TestPathNormalizationFields(t *testing.T) {
	for _, tc := range []struct {
		h    *hcmv3.HttpConnectionManager
		want xdsresource.PathNormalization
	}{
		{&hcmv3.HttpConnectionManager{}, xdsresource.PathNormalization{}},
		{&hcmv3.HttpConnectionManager{NormalizePath: wrapperspb.Bool(true), PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_KEEP_UNCHANGED},
			xdsresource.PathNormalization{Normalize: true, EscapedSlashes: xdsresource.EscapedSlashesKeep}},
		{&hcmv3.HttpConnectionManager{NormalizePath: wrapperspb.Bool(true), MergeSlashes: true, PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD},
			xdsresource.PathNormalization{Normalize: true, MergeSlashes: true, EscapedSlashes: xdsresource.EscapedSlashesForward}},
		{&hcmv3.HttpConnectionManager{PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST},
			xdsresource.PathNormalization{EscapedSlashes: xdsresource.EscapedSlashesReject}},
		{&hcmv3.HttpConnectionManager{PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT},
			xdsresource.PathNormalization{EscapedSlashes: xdsresource.EscapedSlashesRedirect}},
	} {
		l, err := xdsresource.DecodeListener(pathListener(t, tc.h))
		if err != nil {
			t.Fatalf("%v: %v", tc.h, err)
		}
		if got := l.FilterChains[0].HTTP.Paths; got != tc.want {
			t.Errorf("%v: %+v, want %+v", tc.h, got, tc.want)
		}
	}
}

// TestPathNormalizationRefused: settings the proxy could not honour are
// NACKed with the field's path, not served some other way.
func TestPathNormalizationRefused(t *testing.T) {
	for _, tc := range []struct {
		h    *hcmv3.HttpConnectionManager
		want string
	}{
		{&hcmv3.HttpConnectionManager{PathWithEscapedSlashesAction: 9}, "path_with_escaped_slashes_action: unknown action 9"},
		{&hcmv3.HttpConnectionManager{PathNormalizationOptions: &hcmv3.HttpConnectionManager_PathNormalizationOptions{
			ForwardingTransformation: &pathv3.PathTransformation{Operations: []*pathv3.PathTransformation_Operation{{
				OperationSpecifier: &pathv3.PathTransformation_Operation_MergeSlashes_{MergeSlashes: &pathv3.PathTransformation_Operation_MergeSlashes{}}}}}}},
			"path_normalization_options: not supported"},
	} {
		_, err := xdsresource.DecodeListener(pathListener(t, tc.h))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.h, err, tc.want)
		}
	}
}
