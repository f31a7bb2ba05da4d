package translate

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/trellismesh/trellis/internal/config"
)

// Delegation follows Istio's (pilot's mergeVirtualServicesIfNeeded): a root
// VirtualService (one with hosts) may hand an http route to a delegate
// VirtualService (one without hosts) with `delegate: {name, namespace}`.
// The delegate's http routes replace that route, each with the root's match
// merged into its own. Delegates route nothing on their own, and delegation
// is one level deep.

// RouteProblem is a VirtualService http route that is not served as
// written, and why. The translator drops such routes (never the whole
// route configuration of a port) and the analyzer reports them (TRL0008).
type RouteProblem struct {
	Object *config.Object
	Path   string // field path inside Object, e.g. spec.http[1].delegate
	Detail string
	// OutsideRoot marks a delegate route whose match lies outside the
	// root's: Istio drops it silently, and one delegate shared by roots
	// with different matches has such routes by design, so it is reported
	// as a warning rather than an error.
	OutsideRoot bool
}

func (p RouteProblem) String() string {
	return p.Object.ID() + " " + p.Path + ": " + p.Detail
}

// routeOrigin says where one http route of an effective VirtualService was
// written: in the VirtualService itself, or in a delegate it merged in.
type routeOrigin struct {
	obj  *config.Object
	path string // spec.http[i] in obj
	// root and rootPath are set for routes merged in from a delegate.
	root     *config.Object
	rootPath string
}

func (r routeOrigin) String() string {
	s := r.obj.ID() + " " + r.path
	if r.root != nil {
		s += " (delegated from " + r.root.ID() + " " + r.rootPath + ")"
	}
	return s
}

// expanded is a root VirtualService with its delegates merged in.
type expanded struct {
	spec    *networking.VirtualService
	origins []routeOrigin // one per spec.Http entry
}

func isRoot(vs *networking.VirtualService) bool {
	if len(vs.GetHosts()) == 0 {
		return false
	}
	for _, hr := range vs.GetHttp() {
		if hr.GetDelegate() != nil {
			return true
		}
	}
	return false
}

// expandDelegates merges every root VirtualService with its delegates, once
// per World, and records the routes that cannot be served.
func (w *World) expandDelegates() {
	w.expanded = map[*config.Object]*expanded{}
	byKey := map[string]*config.Object{}
	for _, o := range w.vs {
		byKey[o.Namespace+"/"+o.Name] = o
	}
	seen := map[string]bool{}
	problem := func(p RouteProblem) {
		if s := p.String(); !seen[s] {
			seen[s] = true
			w.problems = append(w.problems, p)
		}
	}
	for _, o := range w.vs {
		vs := o.Spec.(*networking.VirtualService)
		if !isRoot(vs) {
			continue
		}
		spec := proto.Clone(vs).(*networking.VirtualService)
		spec.Http = nil
		e := &expanded{spec: spec}
		for i, hr := range vs.GetHttp() {
			path := fmt.Sprintf("spec.http[%d]", i)
			ref := hr.GetDelegate()
			if ref == nil {
				spec.Http = append(spec.Http, hr)
				e.origins = append(e.origins, routeOrigin{obj: o, path: path})
				continue
			}
			ns := ref.GetNamespace()
			if ns == "" {
				ns = o.Namespace
			}
			name := ns + "/" + ref.GetName()
			d := byKey[name]
			if d == nil {
				problem(RouteProblem{Object: o, Path: path + ".delegate", Detail: fmt.Sprintf(
					"delegate VirtualService %s not found; this route is not served (requests it matches go on to the routes after it): create %s, or correct delegate.name/namespace", name, name)})
				continue
			}
			dvs := d.Spec.(*networking.VirtualService)
			if len(dvs.GetHosts()) > 0 {
				why := "has hosts, so it is not a delegate"
				if isRoot(dvs) {
					why = "is itself a root that delegates, and delegation is one level deep"
				}
				problem(RouteProblem{Object: o, Path: path + ".delegate", Detail: fmt.Sprintf(
					"VirtualService %s %s; this route is not served: delegate to a VirtualService without hosts", name, why)})
				continue
			}
			if !exported(dvs.GetExportTo(), d.Namespace, o.Namespace) {
				problem(RouteProblem{Object: o, Path: path + ".delegate", Detail: fmt.Sprintf(
					"delegate VirtualService %s is not exported to namespace %s (exportTo %v); this route is not served: add %q to its exportTo", name, o.Namespace, dvs.GetExportTo(), o.Namespace)})
				continue
			}
			for j, dr := range dvs.GetHttp() {
				dpath := fmt.Sprintf("spec.http[%d]", j)
				if dr.GetDelegate() != nil {
					problem(RouteProblem{Object: d, Path: dpath + ".delegate", Detail: fmt.Sprintf(
						"a delegate VirtualService cannot delegate again; this route is not served for root %s %s", o.ID(), path)})
					continue
				}
				merged, ok := mergeHTTPRoute(hr, dr)
				if !ok {
					problem(RouteProblem{Object: d, Path: dpath + ".match", OutsideRoot: true, Detail: fmt.Sprintf(
						"no match lies within the match of root %s %s, so this route is not served for that root: narrow the match to a subset of the root's (same or longer uri prefix, same exact values, no regex against a non-regex)", o.ID(), path)})
					continue
				}
				w.qualifyDestinations(merged, d.Namespace)
				spec.Http = append(spec.Http, merged)
				e.origins = append(e.origins, routeOrigin{obj: d, path: dpath, root: o, rootPath: path})
			}
		}
		w.expanded[o] = e
	}
}

// effective returns the routes a VirtualService serves: its own, with its
// delegates merged in.
func (w *World) effective(o *config.Object) *networking.VirtualService {
	if e := w.expanded[o]; e != nil {
		return e.spec
	}
	return o.Spec.(*networking.VirtualService)
}

// origin says where http route i of o's effective VirtualService was
// written.
func (w *World) origin(o *config.Object, i int) routeOrigin {
	if e := w.expanded[o]; e != nil && i < len(e.origins) {
		return e.origins[i]
	}
	return routeOrigin{obj: o, path: fmt.Sprintf("spec.http[%d]", i)}
}

// qualifyDestinations resolves the hosts a delegate names in the delegate's
// own namespace, as Istio does before merging: the merged route is
// translated for the root, whose namespace may differ.
func (w *World) qualifyDestinations(hr *networking.HTTPRoute, ns string) {
	for _, d := range hr.GetRoute() {
		if dst := d.GetDestination(); dst != nil {
			dst.Host = w.Reg.FQDN(dst.GetHost(), ns)
		}
	}
	if m := hr.GetMirror(); m != nil {
		m.Host = w.Reg.FQDN(m.GetHost(), ns)
	}
	for _, m := range hr.GetMirrors() {
		if dst := m.GetDestination(); dst != nil {
			dst.Host = w.Reg.FQDN(dst.GetHost(), ns)
		}
	}
}

// mergeHTTPRoute is one delegate route under its root route: the matches
// merged, and the root's route-level settings where the delegate sets none.
// ok is false when no delegate match fits within a root match.
func mergeHTTPRoute(root, delegate *networking.HTTPRoute) (*networking.HTTPRoute, bool) {
	matches, ok := mergeMatches(root.GetMatch(), delegate.GetMatch())
	if !ok {
		return nil, false
	}
	out := proto.Clone(delegate).(*networking.HTTPRoute)
	out.Match = matches
	out.Name = joinNames(root.GetName(), delegate.GetName())
	if out.Rewrite == nil {
		out.Rewrite = root.GetRewrite()
	}
	if out.DirectResponse == nil {
		out.DirectResponse = root.GetDirectResponse()
	}
	if out.Timeout == nil {
		out.Timeout = root.GetTimeout()
	}
	if out.Retries == nil {
		out.Retries = root.GetRetries()
	}
	if out.Fault == nil {
		out.Fault = root.GetFault()
	}
	if out.Mirror == nil {
		out.Mirror = root.GetMirror()
	}
	//lint:ignore SA1019 users still write the deprecated field, and Istio inherits it too
	if mp := root.GetMirrorPercent(); out.MirrorPercent == nil {
		//lint:ignore SA1019 as above
		out.MirrorPercent = mp
	}
	if out.MirrorPercentage == nil {
		out.MirrorPercentage = root.GetMirrorPercentage()
	}
	if out.Mirrors == nil {
		out.Mirrors = root.GetMirrors()
	}
	if out.CorsPolicy == nil {
		out.CorsPolicy = root.GetCorsPolicy()
	}
	if out.Headers == nil {
		out.Headers = root.GetHeaders()
	}
	return out, true
}

// joinNames names a merged route or match as Istio does: "root-delegate",
// or whichever of the two is set.
func joinNames(root, delegate string) string {
	switch {
	case delegate == "":
		return root
	case root == "":
		return delegate
	}
	return root + "-" + delegate
}

// mergeMatches combines a root route's match blocks with a delegate
// route's. No blocks on either side means the other side's apply. Otherwise
// every delegate block must fit within at least one root block, and is
// merged with each root block it fits; one that fits none drops the route.
func mergeMatches(root, delegate []*networking.HTTPMatchRequest) ([]*networking.HTTPMatchRequest, bool) {
	if len(root) == 0 {
		return delegate, true
	}
	if len(delegate) == 0 {
		return root, true
	}
	var out []*networking.HTTPMatchRequest
	for _, leaf := range delegate {
		fits := false
		for _, r := range root {
			if matchConflict(r, leaf) {
				continue
			}
			out = append(out, mergeMatch(r, leaf))
			fits = true
		}
		if !fits {
			return nil, false
		}
	}
	return out, len(out) > 0
}

// mergeMatch is a delegate match block with the root's conditions filled in
// where the delegate sets none; for maps, the delegate's entries win.
func mergeMatch(root, leaf *networking.HTTPMatchRequest) *networking.HTTPMatchRequest {
	out := proto.Clone(leaf).(*networking.HTTPMatchRequest)
	out.Name = joinNames(root.GetName(), leaf.GetName())
	if out.Uri == nil {
		out.Uri = root.GetUri()
	}
	if out.Scheme == nil {
		out.Scheme = root.GetScheme()
	}
	if out.Method == nil {
		out.Method = root.GetMethod()
	}
	if out.Authority == nil {
		out.Authority = root.GetAuthority()
	}
	out.Headers = mergeMaps(root.GetHeaders(), leaf.GetHeaders())
	out.WithoutHeaders = mergeMaps(root.GetWithoutHeaders(), leaf.GetWithoutHeaders())
	out.QueryParams = mergeMaps(root.GetQueryParams(), leaf.GetQueryParams())
	out.SourceLabels = mergeMaps(root.GetSourceLabels(), leaf.GetSourceLabels())
	if out.Port == 0 {
		out.Port = root.GetPort()
	}
	if out.SourceNamespace == "" {
		out.SourceNamespace = root.GetSourceNamespace()
	}
	if len(out.Gateways) == 0 {
		out.Gateways = root.GetGateways()
	}
	if out.StatPrefix == "" {
		out.StatPrefix = root.GetStatPrefix()
	}
	return out
}

func mergeMaps[V any](root, leaf map[string]V) map[string]V {
	if len(root) == 0 && len(leaf) == 0 {
		return nil
	}
	out := make(map[string]V, len(root)+len(leaf))
	for k, v := range root {
		out[k] = v
	}
	for k, v := range leaf {
		out[k] = v
	}
	return out
}

// matchConflict reports whether a delegate match block cannot lie within a
// root block: a condition both set that the delegate's does not narrow.
func matchConflict(root, leaf *networking.HTTPMatchRequest) bool {
	pairs := [][2]*networking.StringMatch{
		{root.GetUri(), leaf.GetUri()},
		{root.GetScheme(), leaf.GetScheme()},
		{root.GetMethod(), leaf.GetMethod()},
		{root.GetAuthority(), leaf.GetAuthority()},
	}
	for _, p := range pairs {
		if stringMatchConflict(p[0], p[1]) {
			return true
		}
	}
	for k, v := range leaf.GetHeaders() {
		if stringMatchConflict(root.GetHeaders()[k], v) {
			return true
		}
	}
	for k, v := range leaf.GetWithoutHeaders() {
		if stringMatchConflict(root.GetWithoutHeaders()[k], v) {
			return true
		}
	}
	for k, v := range leaf.GetQueryParams() {
		if stringMatchConflict(root.GetQueryParams()[k], v) {
			return true
		}
	}
	if root.GetIgnoreUriCase() != leaf.GetIgnoreUriCase() {
		return true
	}
	if root.GetPort() != 0 && leaf.GetPort() != 0 && root.GetPort() != leaf.GetPort() {
		return true
	}
	if ns := root.GetSourceNamespace(); ns != "" && leaf.GetSourceNamespace() != ns {
		return true
	}
	for k, v := range leaf.GetSourceLabels() {
		if rv, ok := root.GetSourceLabels()[k]; ok && rv != v {
			return true
		}
	}
	if len(root.GetGateways()) > 0 {
		for _, g := range leaf.GetGateways() {
			if !contains(root.GetGateways(), g) {
				return true
			}
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// stringMatchConflict reports whether leaf is not a narrowing of root. An
// unset side never conflicts. Regexes cannot be compared, so a regex on
// either side conflicts, and so does a root that only asks for presence.
func stringMatchConflict(root, leaf *networking.StringMatch) bool {
	if root == nil || leaf == nil {
		return false
	}
	if root.GetRegex() != "" || leaf.GetRegex() != "" {
		return true
	}
	if exact := root.GetExact(); exact != "" {
		return leaf.GetExact() != exact
	}
	if prefix := root.GetPrefix(); prefix != "" {
		switch {
		case leaf.GetPrefix() != "":
			return !strings.HasPrefix(leaf.GetPrefix(), prefix)
		case leaf.GetExact() != "":
			return !strings.HasPrefix(leaf.GetExact(), prefix)
		}
	}
	return true
}
