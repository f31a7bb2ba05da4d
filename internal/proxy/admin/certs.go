package admin

import (
	"encoding/json"
	"net/http"

	"github.com/trellismesh/trellis/internal/proxy/certs"
)

// IdentitySource is implemented by a Source whose proxy has a workload
// identity; /certs shows it.
type IdentitySource interface {
	// WorkloadIdentity is the proxy's certificate source, nil for none.
	WorkloadIdentity() certs.Source
}

// certsPage is /certs, shaped like Envoy's: a list of certificates (the
// proxy has one workload certificate, or none yet).
type certsPage struct {
	Certificates []certs.Snapshot `json:"certificates"`
	// Error says why there is no certificate yet.
	Error string `json:"error,omitempty"`
}

// certs shows the workload certificate's public parts; the key
// never leaves certs (Snapshot has no field for it).
func (a *admin) certs(w http.ResponseWriter, _ *http.Request) {
	page := certsPage{Certificates: []certs.Snapshot{}}
	if is, ok := a.src.(IdentitySource); ok {
		if src := is.WorkloadIdentity(); src != nil {
			snap, err := certs.Describe(src)
			switch {
			case err == nil:
				page.Certificates = append(page.Certificates, snap)
			case snap.LastError != "":
				page.Error = err.Error() + ": " + snap.LastError
			default:
				page.Error = err.Error()
			}
		}
	}
	out, err := json.MarshalIndent(page, "", "  ")
	if err != nil {
		http.Error(w, "marshal certs: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentJSON)
	w.Write(append(out, '\n'))
}
