package local

import (
	"strconv"
	"time"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/trellismesh/trellis/internal/config"
)

// proxyDrainDuration is trellis-proxy's own --drain-duration default
// (sidecar.DefaultDrainDuration; not imported, so that the trellis binary
// does not link the proxy).
const proxyDrainDuration = 5 * time.Second

// sidecarStopMargin is what a sidecar gets after its drain to close and
// exit before it is killed.
const sidecarStopMargin = 5 * time.Second

// proxySettings are the trellis-proxy settings that Istio's ProxyConfig
// controls, as MeshConfig.defaultConfig sets them for every sidecar. Istio
// applies defaultConfig when it injects a pod, so a pod keeps the
// settings it started with; local mode reads them when it starts a pod.
type proxySettings struct {
	// args follow the proxy binary on its command line.
	args []string
	// grace is how long the sidecar gets between SIGTERM and SIGKILL:
	// its drain plus sidecarStopMargin, so a long drain is not cut short.
	grace time.Duration
}

// proxySettingsFor maps the defaultConfig fields Trellis has an
// equivalent for; the others are not in force in local mode.
//   - terminationDrainDuration: how long requests in flight get to finish
//     after SIGTERM (--drain-duration); Istio's default, 5 s, is also the
//     proxy's.
//   - concurrency: the proxy's threads (--concurrency, 0 meaning one per
//     CPU); unset keeps the proxy's own default of one, not Istio's two
//     (docs/performance.md says why).
func proxySettingsFor(mc *meshv1alpha1.MeshConfig) proxySettings {
	pc := mc.GetDefaultConfig()
	drain := proxyDrainDuration
	var args []string
	if d := pc.GetTerminationDrainDuration(); d != nil {
		drain = d.AsDuration()
		args = append(args, "--drain-duration="+drain.String())
	}
	if c := pc.GetConcurrency(); c != nil {
		args = append(args, "--concurrency="+strconv.Itoa(int(c.GetValue())))
	}
	return proxySettings{args: args, grace: drain + sidecarStopMargin}
}

// meshConfig is the MeshConfig in force now: the root namespace's istio
// ConfigMap as the control plane reads it, Istio's defaults without one.
func (s *supervisor) meshConfig() *meshv1alpha1.MeshConfig {
	if s.cp != nil {
		if snap := s.cp.Store.Snapshot(); snap != nil && snap.Mesh != nil {
			return snap.Mesh
		}
	}
	return config.DefaultMeshConfig()
}
