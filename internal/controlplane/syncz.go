package controlplane

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"

	"github.com/trellismesh/trellis/internal/xds"
)

// SynczPath is where the monitoring server serves the connected proxies'
// sync state, under istiod's name for it.
const SynczPath = "/debug/syncz"

// Syncz is what SynczPath serves.
type Syncz struct {
	// ControlPlane names this replica: its hostname and process id, so
	// two control planes on one host (or two replicas) are told apart.
	ControlPlane string          `json:"controlPlane"`
	Proxies      []xds.ProxySync `json:"proxies"`
}

// replicaID is the control plane's name in Syncz.
func replicaID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "trellis"
	}
	return h + "-" + strconv.Itoa(os.Getpid())
}

func (cp *ControlPlane) synczHandler() http.HandlerFunc {
	id := replicaID()
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Syncz{ControlPlane: id, Proxies: cp.XDS.Syncz()})
	}
}
