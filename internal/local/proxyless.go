package local

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/trellismesh/trellis/internal/identity/filecert"
	"github.com/trellismesh/trellis/internal/registry"
	"github.com/trellismesh/trellis/internal/xds"
)

// Proxyless gRPC pods. A pod annotated as Istio's injector wants it for
// proxyless gRPC (inject.istio.io/templates: grpc-agent) runs no sidecar:
// its grpc-go apps are the xDS clients and servers. What Istio's
// grpc-agent does for such a pod, trellis up does in its own process:
//
//   - the identity: a filecert.Writer keeps cert-chain.pem, key.pem and
//     root-cert.pem for spiffe://<td>/ns/<ns>/sa/<service account> in the
//     pod's own state folder (0700), from the control plane's CA, renewed
//     at half life and when the trust bundle changes;
//   - grpc-go's bootstrap (filecert.Bootstrap) next to them, naming the
//     "default" file_watcher provider over those files, the node as a
//     sidecar's (its labels, namespace and service account) and xDS over
//     mTLS with the same files on the secure socket when the control
//     plane serves one (the namespace and service account then come from
//     the certificate), else the plaintext xDS socket;
//   - GRPC_XDS_BOOTSTRAP naming it, for every container of the pod.
//
// The pod is labelled security.istio.io/tlsMode: istio (plan.go) unless
// its template sets that label itself: trellis up always hands it
// certificates, so clients use mTLS and its xDS servers require it. Istio
// leaves the label to the user, since only an app that builds its
// credentials with grpc-go's xds package uses the certificates; a pod
// whose apps use insecure credentials should say
// security.istio.io/tlsMode: disabled.
//
// When the pod is gone the writer stops and its files go with the pod's
// folder (releaseIdentity).

// proxylessBootstrapName is grpc-go's bootstrap in the pod's folder.
const proxylessBootstrapName = "grpc-bootstrap.json"

// proxylessCertsDir holds the pod's certificate files.
const proxylessCertsDir = "certs"

func (p *pod) proxylessBootstrap() string {
	return filepath.Join(p.identityDir(), proxylessBootstrapName)
}

// proxylessEnv is what every container of a proxyless pod gets. It also
// names the pod's identity for status, here in newPod, before anything
// reads the pod.
func (p *pod) proxylessEnv() []string {
	if !p.w.Pod.Proxyless {
		return nil
	}
	if cp := p.s.cp; cp != nil && cp.CA() != nil {
		p.identity = cp.Identity(p.w.Namespace, cmp.Or(p.w.Pod.ServiceAccount, "default")).String()
	}
	return []string{"GRPC_XDS_BOOTSTRAP=" + p.proxylessBootstrap()}
}

// startProxyless writes the pod's identity files and bootstrap and keeps
// the files renewed until stopProxyless. An error is reported on the
// console and the pod still runs: its grpc-go apps then fail to start
// their xDS clients, saying the bootstrap is missing, rather than run
// without an identity.
func (p *pod) startProxyless() {
	if !p.w.Pod.Proxyless || p.s.cp == nil {
		return
	}
	if err := p.writeProxyless(); err != nil {
		p.s.console.printf("pod %s: cannot set up proxyless gRPC: %v", p.key(), err)
	}
}

func (p *pod) writeProxyless() error {
	cp := p.s.cp
	if cp.CA() == nil {
		return fmt.Errorf("the control plane runs no CA, so there is no identity to give the pod's grpc-go apps")
	}
	sa := cmp.Or(p.w.Pod.ServiceAccount, "default")
	id := cp.Identity(p.w.Namespace, sa)
	dir := p.identityDir()
	if err := os.MkdirAll(dir, stateDirMode); err != nil {
		return fmt.Errorf("cannot create the pod's state folder: %w", err)
	}
	certs := filepath.Join(dir, proxylessCertsDir)
	// The bundle is compared in memory with the in-process CA's, so a
	// check every second costs nothing and keeps a root rotation's lag
	// (the control plane serves from the new root at once) to a second.
	w, err := filecert.Start(filecert.Options{Dir: certs, ID: id, CA: cp.CA(), RootCheck: time.Second,
		Log: slog.Default().With("pod", p.key())})
	if err != nil {
		return fmt.Errorf("certificate files for %s: %w", id, err)
	}
	p.files = w

	labels := map[string]any{}
	for k, v := range p.w.Pod.Labels {
		labels[k] = v
	}
	opts := filecert.BootstrapOptions{
		XDSAddress: "unix://" + p.s.xdsSocket,
		NodeID:     xds.NodeID(p.ip.String(), p.name, p.w.Namespace),
		Metadata: map[string]any{
			"NAMESPACE": p.w.Namespace, "SERVICE_ACCOUNT": sa, "LABELS": labels,
			"WORKLOAD_NAME": p.w.Name, "INSTANCE_IPS": p.ip.String(),
		},
	}
	if a := cp.SecureAddr(); a != nil {
		opts.XDSAddress, opts.SecureXDS = "unix://"+a.String(), true
	}
	b, err := filecert.Bootstrap(certs, opts)
	if err != nil {
		return err
	}
	return writePrivate(p.proxylessBootstrap(), b)
}

// stopProxyless stops renewing the pod's files; releaseIdentity then
// removes them with the pod's folder.
func (p *pod) stopProxyless() {
	if p.files != nil {
		p.files.Close()
		p.files = nil
	}
}

// isProxyless is whether a pod template asks for Istio's proxyless gRPC
// template.
func isProxyless(annotations map[string]string) bool {
	return registry.IsProxyless(annotations)
}
