package validate

import (
	"encoding/json"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/trellismesh/trellis/internal/config/field"
)

// checkMeshTelemetry checks MeshConfig's telemetry fields: the
// extensionProviders the proxy exports to, the legacy access log settings
// and the default sampling rate. A provider name that is not defined
// (defaultProviders, a Telemetry's providers) is not an error: istiod logs
// and ignores it, and so does the translator (it warns once).
func checkMeshTelemetry(errs *field.List, p *field.Path, mc *meshv1alpha1.MeshConfig) {
	for i, ep := range mc.GetExtensionProviders() {
		ip := p.Child("extensionProviders").Index(i)
		if o := ep.GetOpentelemetry(); o != nil {
			op := ip.Child("opentelemetry")
			if o.GetService() == "" {
				errs.Add(op.Child("service"), "required: the collector's service, as <host> or <namespace>/<host>")
			}
			if o.GetPort() == 0 || o.GetPort() > 65535 {
				errs.Add(op.Child("port"), "%d is not a port: the collector's port, 1..65535", o.GetPort())
			}
			if h := o.GetHttp(); h != nil {
				if h.GetPath() != "" && !strings.HasPrefix(h.GetPath(), "/") {
					errs.Add(op.Child("http", "path"), "%q must start with /", h.GetPath())
				}
				checkDuration(errs, op.Child("http", "timeout"), h.GetTimeout())
				for j, hd := range h.GetHeaders() {
					if hd.GetName() == "" {
						errs.Add(op.Child("http", "headers").Index(j).Child("name"), "required")
					}
				}
			}
			if g := o.GetGrpc(); g != nil {
				checkDuration(errs, op.Child("grpc", "timeout"), g.GetTimeout())
				for j, hd := range g.GetInitialMetadata() {
					if hd.GetName() == "" {
						errs.Add(op.Child("grpc", "initialMetadata").Index(j).Child("name"), "required")
					}
				}
			}
			if o.GetHttp() != nil && o.GetGrpc() != nil {
				errs.Add(op, "set http or grpc, not both")
			}
		}
		if fl := ep.GetEnvoyFileAccessLog(); fl != nil && fl.GetLogFormat() != nil {
			lf := fl.GetLogFormat()
			if lf.GetText() == "" && lf.GetLabels() == nil {
				errs.Add(ip.Child("envoyFileAccessLog", "logFormat"), "set text or labels, or remove logFormat for Istio's default format")
			}
		}
	}
	if mc.GetAccessLogEncoding() == meshv1alpha1.MeshConfig_JSON && mc.GetAccessLogFormat() != "" {
		var v map[string]any
		if err := json.Unmarshal([]byte(mc.GetAccessLogFormat()), &v); err != nil {
			errs.Add(p.Child("accessLogFormat"), "with accessLogEncoding JSON it must be a JSON object of labels: %v", err)
		}
	}
	if tr := mc.GetDefaultConfig().GetTracing(); tr != nil {
		checkPercentValue(errs, p.Child("defaultConfig", "tracing", "sampling"), tr.GetSampling())
	}
}
