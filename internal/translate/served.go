package translate

import (
	"errors"
	"fmt"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/config/hostmatch"
	"github.com/trellismesh/trellis/internal/proxy/xdsresource"
	"github.com/trellismesh/trellis/internal/registry"
)

// A sidecar refuses (NACKs) a route configuration as a whole, so one route
// it cannot take would stop every service on that port from routing. Each
// VirtualService's routes are therefore put through the sidecar's own
// decoder before they join the port's configuration; the routes it refuses
// are dropped, logged and reported by the analyzer (TRL0008), and the rest
// of the port keeps working.

// servedVSRoutes is vsRoutes without the routes the proxy would refuse.
func (t *translation) servedVSRoutes(o *config.Object, vs *networking.VirtualService, svc *registry.Service, port uint32) []*routev3.Route {
	routes, problems := t.checkedVSRoutes(o, vs, svc, port)
	for _, p := range problems {
		t.w.report(t, p)
	}
	return routes
}

// checkedVSRoutes translates vs for one service port and splits off the
// routes the sidecar's decoder refuses, each with the http route it came
// from. proxyless gRPC clients have their own rules and are not checked.
func (t *translation) checkedVSRoutes(o *config.Object, vs *networking.VirtualService, svc *registry.Service, port uint32) ([]*routev3.Route, []RouteProblem) {
	routes := t.vsRoutes(o, vs, svc, port)
	if t.proxy.Generator == GeneratorGRPC || refusal(routes) == nil {
		return routes, nil
	}
	// Rare: find which http route each Envoy route came from, translating
	// them one at a time (vsRoutes gives each match block its own route).
	var owner []int
	for i, hr := range vs.GetHttp() {
		one := &networking.VirtualService{Hosts: vs.GetHosts(), Gateways: vs.GetGateways(), ExportTo: vs.GetExportTo(), Http: []*networking.HTTPRoute{hr}}
		for range t.vsRoutes(o, one, svc, port) {
			owner = append(owner, i)
		}
	}
	var kept []*routev3.Route
	var problems []RouteProblem
	for k, r := range routes {
		err := refusal([]*routev3.Route{r})
		if err == nil {
			kept = append(kept, r)
			continue
		}
		p := RouteProblem{Object: o, Path: "spec.http"}
		if len(owner) == len(routes) {
			origin := t.w.origin(o, owner[k])
			p.Object, p.Path = origin.obj, origin.path
			if origin.root != nil {
				err = fmt.Errorf("%w (delegated from %s %s)", err, origin.root.ID(), origin.rootPath)
			}
		}
		p.Detail = fmt.Sprintf("the proxy would refuse this route for %s:%d (%v); it is not served, the other routes of the port are", svc.Hostname, port, err)
		problems = append(problems, p)
	}
	return kept, problems
}

// refusal is the error the sidecar's decoder gives for routes in a route
// configuration of their own, or nil when it takes them.
func refusal(routes []*routev3.Route) error {
	rc := &routev3.RouteConfiguration{Name: "check", VirtualHosts: []*routev3.VirtualHost{{Name: "check", Domains: []string{"*"}, Routes: routes}}}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rc)
	if err != nil {
		return fmt.Errorf("encoding: %w", err)
	}
	if _, err := xdsresource.DecodeRouteConfig(b); err != nil {
		// The path inside the throwaway configuration means nothing to a
		// user; what follows the route index does.
		var xe *xdsresource.Error
		if errors.As(err, &xe) {
			if _, rest, ok := strings.Cut(xe.Path, "].routes["); ok {
				if _, field, ok := strings.Cut(rest, "]"); ok {
					return fmt.Errorf("%s: %w", strings.TrimPrefix(field, "."), xe.Err)
				}
			}
		}
		return err
	}
	return nil
}

// report logs a route that is not served, once per World: every scope's
// translation meets the same object.
func (w *World) report(t *translation, p RouteProblem) {
	if _, dup := w.reported.LoadOrStore(p.String(), true); dup {
		return
	}
	t.log.Warn("VirtualService route not served", "code", RouteNotServedCode, "object", p.Object.ID(), "path", p.Path, "detail", p.Detail)
}

// RouteNotServedCode is the analyzer code for routes that are not served
// (docs/analyzers.md).
const RouteNotServedCode = "TRL0008"

// RouteProblems lists the VirtualService routes of a snapshot that are not
// served as written: delegations that cannot be followed, delegate routes
// outside their root's match, http routes the sidecar would refuse,
// checked for every HTTP port of every service a VirtualService routes,
// and tcp and tls routes whose filter chains the sidecar would refuse,
// checked for every other port, all as seen from the VirtualService's own
// namespace.
func RouteProblems(w *World) []RouteProblem {
	out := append([]RouteProblem(nil), w.problems...)
	seen := map[string]bool{}
	for _, p := range out {
		seen[p.String()] = true
	}
	for _, o := range w.vs {
		vs := o.Spec.(*networking.VirtualService)
		if len(vs.GetHosts()) == 0 || !appliesToMesh(vs) {
			continue
		}
		t := &translation{w: w, proxy: &Proxy{Namespace: o.Namespace}, log: newLogger(nil)}
		eff := w.effective(o)
		ports := map[uint32]bool{}
		l4 := len(vs.GetTcp()) > 0 || len(vs.GetTls()) > 0
		for _, svc := range w.Reg.Services() {
			if !routesHost(w, o, vs, svc.Hostname) {
				continue
			}
			for _, port := range svc.Ports {
				if !port.Protocol.IsHTTP() && port.Protocol != registry.Unsupported {
					// tcp and tls routes become the port's listener
					// chains, which the guard checks (guard.go).
					if l4 {
						_, problems := t.checkedTCPListener(o, vs, svc, port)
						for _, p := range problems {
							if !seen[p.String()] {
								seen[p.String()] = true
								out = append(out, p)
							}
						}
					}
					continue
				}
				if ports[port.Port] {
					continue
				}
				// Routes depend on the port only through match.port and the
				// destination's default port; one service per port number
				// is enough to find what the proxy refuses.
				ports[port.Port] = true
				_, problems := t.checkedVSRoutes(o, eff, svc, port.Port)
				for _, p := range problems {
					if !seen[p.String()] {
						seen[p.String()] = true
						out = append(out, p)
					}
				}
			}
		}
	}
	return out
}

func routesHost(w *World, o *config.Object, vs *networking.VirtualService, hostname string) bool {
	for _, h := range vs.GetHosts() {
		if hostmatch.Within(hostname, w.Reg.FQDN(h, o.Namespace)) {
			return true
		}
	}
	return false
}
