// Package local runs a folder of Kubernetes manifests as a mesh on one
// machine (`trellis up`): every Deployment's pods become local processes,
// the app's containers plus a trellis-proxy sidecar, each pod with its own
// IP, and the pods are fed to an in-process control plane as Pod objects
// so that Services select them as they would in a cluster.
//
// A Mesh holds three parts: the node network (node.go: pod IPs, and in
// transparent mode network namespaces, Service VIPs, kube-proxy rules and
// DNS), the pod supervisor (supervisor.go, pod.go: start, probe, roll,
// stop, publish to the store) and the reporter (report.go: pod lines,
// `mesh ready`, mesh.json). plan.go is the pure part: manifests in, the
// pods to run out, with a path-rooted error for everything local mode
// cannot run.
package local
