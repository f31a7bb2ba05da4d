package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/telemetry/accesslog"
)

// accessLogChildEnv makes TestAccessLogChild act as a proxy: its own log on
// stderr, an access log on /dev/stdout.
const accessLogChildEnv = "TRELLIS_TEST_ACCESSLOG_CHILD"

func TestAccessLogChild(t *testing.T) {
	if os.Getenv(accessLogChildEnv) == "" {
		t.Skip("run by TestLogsShowsProxyAccessLog")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	log.Info("connected to the xDS server")
	l, err := accesslog.New(accesslog.Config{Path: "/dev/stdout", JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(&accesslog.Entry{StartTime: time.Date(2026, 12, 8, 4, 0, 0, 0, time.UTC), Method: "GET", Path: "/productpage", Protocol: "HTTP/1.1", ResponseCode: 200, UpstreamCluster: "inbound|9080||", Direction: "inbound"})
	log.Info("draining")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLogsShowsProxyAccessLog: the access log a sidecar writes to
// /dev/stdout lands, whole and after the proxy's own earlier lines, in the
// file `trellis up` gives the proxy for stdout and stderr alike (as
// internal/local's process start does), and `trellis logs -c trellis-proxy
// POD` prints it.
func TestLogsShowsProxyAccessLog(t *testing.T) {
	sd := t.TempDir()
	if err := os.WriteFile(filepath.Join(sd, "mesh.json"), []byte(`{"pid": 2147483647, "startTime": 1, "mode": "explicit", "dir": "/src/shop", "pods": null}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(sd, "logs", "default", "productpage-0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "trellis-proxy.log")
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAccessLogChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), accessLogChildEnv+"=1")
	cmd.Stdout, cmd.Stderr = f, f
	err = cmd.Run()
	f.Close()
	if err != nil {
		b, _ := os.ReadFile(logFile)
		t.Fatalf("child: %v\n%s", err, b)
	}

	var out, errOut bytes.Buffer
	if code := Execute(context.Background(), []string{"logs", "--state-dir", sd, "-c", "trellis-proxy", "productpage-0"}, &out, &errOut); code != 0 {
		t.Fatalf("trellis logs: exit %d, stderr %q", code, errOut.String())
	}
	lines := strings.Split(out.String(), "\n")
	xds, access := -1, -1
	for i, line := range lines {
		if strings.Contains(line, "connected to the xDS server") {
			xds = i
		}
		if strings.HasPrefix(line, "{") {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Errorf("access log line %q is not whole JSON: %v", line, err)
				continue
			}
			if got := fmt.Sprint(m["method"], " ", m["path"], " ", m["response_code"], " ", m["upstream_cluster"], " ", m["direction"]); got != "GET /productpage 200 inbound|9080|| inbound" {
				t.Errorf("access log entry %q", got)
			}
			access = i
		}
	}
	if xds < 0 || access < 0 || access < xds {
		t.Errorf("trellis logs printed (want the proxy's xDS line, then its access log line):\n%s", out.String())
	}
}
