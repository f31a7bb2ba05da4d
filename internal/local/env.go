package local

import (
	"strings"
)

// podInfo is what a running pod knows that its template does not.
type podInfo struct {
	Name, Namespace, UID, IP, ServiceAccount string
	Labels, Annotations                      map[string]string
}

// inheritedEnvNames are all a container takes from the environment
// `trellis up` runs in, as a kubelet gives a container only its image's
// and its spec's environment: enough for a local program to run (HOME for
// its caches, the locale, the temp dir, the terminal) and nothing else,
// so that the user's tokens and keys (AWS_SECRET_ACCESS_KEY,
// GITHUB_TOKEN, ...) never reach a pod. A pod needing more declares it in
// its env, as it would on a cluster.
var inheritedEnvNames = []string{"HOME", "LANG", "TMPDIR", "TERM"}

// defaultPath is the PATH a container gets when trellis has none (a
// container runtime's default).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// baseEnv is the inherited part of every process's environment:
// inheritedEnvNames from host (HOME defaults to /, as a runtime sets it
// for a user without one) and PATH led by the extra dirs (the manifests
// folder and trellis's own, so `trellis demo` and programs kept beside the
// manifests run by name).
func baseEnv(host []string, pathDirs []string) []string {
	vals := map[string]string{}
	for _, kv := range host {
		if name, v, ok := strings.Cut(kv, "="); ok {
			vals[name] = v
		}
	}
	if vals["HOME"] == "" {
		vals["HOME"] = "/"
	}
	out := make([]string, 0, len(inheritedEnvNames)+1)
	for _, name := range inheritedEnvNames {
		if v := vals[name]; v != "" {
			out = append(out, name+"="+v)
		}
	}
	path := vals["PATH"]
	if path == "" {
		path = defaultPath
	}
	dirs := append(append([]string(nil), pathDirs...), path)
	return append(out, "PATH="+strings.Join(dirs, ":"))
}

// sidecarProxyEnv points an app at its sidecar (explicit mode).
func sidecarProxyEnv(ip string) []string {
	u := "http://" + ip + ":15001"
	return []string{
		"HTTP_PROXY=" + u, "http_proxy=" + u,
		"HTTPS_PROXY=" + u, "https_proxy=" + u,
		// The pod's own address is not mesh traffic.
		"NO_PROXY=localhost,127.0.0.1,::1," + ip, "no_proxy=localhost,127.0.0.1,::1," + ip,
	}
}

// containerEnv is a container's full environment: base, then what the
// pod adds, then the container's declared env (declaredEnv).
func containerEnv(base, podAdds []string, info podInfo, c Container) []string {
	env := append(append([]string(nil), base...), "HOSTNAME="+info.Name)
	env = append(env, podAdds...)
	return dedupEnv(append(env, declaredEnv(info, c)...))
}

// declaredEnv is the env the container's spec declares (env, envFrom,
// ConfigMap values), with downward-API fields filled and $(VAR)
// references expanded as Kubernetes does. It is the only part of a
// container's environment the mesh's state records: the rest is the base
// and the mesh's own, never the user's to see in mesh.json.
func declaredEnv(info podInfo, c Container) []string {
	env := make([]string, 0, len(c.Env))
	defined := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.Field != "":
			v = fieldValue(info, e.Field)
		case !e.Literal:
			v = expand(v, defined)
		}
		defined[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	return dedupEnv(env)
}

// expandCommand expands $(VAR) in a command line against the container's
// declared env, as Kubernetes does for command and args (the image's
// environment, here the base, is not among the variables).
func expandCommand(argv []string, env []string) []string {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = expand(a, vars)
	}
	return out
}

// expand replaces $(NAME) with its value when NAME is defined, leaves it
// as written otherwise, and turns $$ into $ (Kubernetes' rules).
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

func fieldValue(info podInfo, path string) string {
	switch path {
	case "status.podIP", "status.podIPs":
		return info.IP
	case "status.hostIP", "status.hostIPs":
		return "127.0.0.1"
	case "metadata.name":
		return info.Name
	case "metadata.namespace":
		return info.Namespace
	case "metadata.uid":
		return info.UID
	case "spec.serviceAccountName":
		return info.ServiceAccount
	case "spec.nodeName":
		return "local"
	}
	if k, ok := bracketKey(path, "metadata.labels['"); ok {
		return info.Labels[k]
	}
	if k, ok := bracketKey(path, "metadata.annotations['"); ok {
		return info.Annotations[k]
	}
	return ""
}

func bracketKey(path, prefix string) (string, bool) {
	if !strings.HasPrefix(path, prefix) || !strings.HasSuffix(path, "']") {
		return "", false
	}
	return path[len(prefix) : len(path)-2], true
}

// dedupEnv keeps the last value of each name, at its first position, so
// later layers override earlier ones whatever a program's getenv does.
func dedupEnv(env []string) []string {
	last := map[string]int{}
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		last[k] = i
	}
	out := make([]string, 0, len(last))
	seen := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, env[last[k]])
	}
	return out
}
