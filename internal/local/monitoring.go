package local

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// MonitoringSocketName is the control plane's metrics socket in the state
// dir: istiod's monitoring port (/metrics over HTTP), on a Unix socket so
// that meshes running side by side never contend for 15014. Read it with
// an HTTP client that dials this socket.
const MonitoringSocketName = "controlplane-monitoring.sock"

// listenMonitoring opens the metrics socket, replacing one a killed
// `trellis up` left behind.
func listenMonitoring(stateDir string) (net.Listener, error) {
	sock := filepath.Join(stateDir, MonitoringSocketName)
	_ = os.Remove(sock)
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("cannot serve control-plane metrics on %s: %w", sock, err)
	}
	return lis, nil
}
