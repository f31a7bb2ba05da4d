package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/controlplane"
	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/xds"
)

func newProxyStatusCmd() *cobra.Command {
	var output, stateDir, xdsDebug string
	cmd := &cobra.Command{
		Use:   "proxy-status [-o json] [--xds-debug URL]",
		Short: "Show every proxy connected to the control plane and its sync state per xDS type",
		Long: `Proxy-status lists the proxies connected to the control plane, as
'istioctl proxy-status' does: each proxy's name (pod.namespace), the control
plane replica it is connected to, and per resource type (CDS, LDS, EDS,
RDS) whether it runs what the control plane last sent it:

  SYNCED    the proxy ACKed the last response of that type
  NOT SENT  nothing of that type was sent to the proxy
  STALE     a response was sent and not ACKed yet, or the proxy rejected
            it (NACK); the proxy's error follows the table

VERSION is the config (store) version the proxy's config was translated
from.

By default it reads the mesh that 'trellis up' runs on the state dir.
--xds-debug reads a control plane's monitoring address instead (what
'trellis controlplane --monitoring-addr' serves). -o json prints what the
control plane serves at /debug/syncz.`,
		Example: `  trellis proxy-status
  trellis proxy-status --xds-debug http://127.0.0.1:15014
  trellis proxy-status -o json | jq '.proxies[] | select(.cds.state != "SYNCED")'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageError(cmd, errors.New("proxy-status takes no arguments"))
			}
			if output != "" && output != "json" {
				return usageError(cmd, fmt.Errorf("unknown output format %q: use -o json, or no -o for the table", output))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, base, err := synczClient(stateDir, xdsDebug)
			if err != nil {
				return err
			}
			defer c.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			raw, sz, err := fetchSyncz(ctx, c, base)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			// Local mode has one "cluster", the machine; a control plane read
			// directly does not say which cluster it serves (yet).
			cluster := "local"
			if xdsDebug != "" {
				cluster = "-"
			}
			return printProxyStatus(cmd.OutOrStdout(), sz, cluster)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json, or the table (the default)")
	cmd.Flags().StringVar(&xdsDebug, "xds-debug", "", "read this control plane's monitoring address (e.g. http://127.0.0.1:15014) instead of the local mesh's")
	stateDirFlag(cmd, &stateDir)
	return cmd
}

// synczClient is an HTTP client and base URL for the control plane's
// monitoring server: the URL given, or the running local mesh's socket.
func synczClient(stateDir, xdsDebug string) (*http.Client, string, error) {
	if xdsDebug != "" {
		if !strings.Contains(xdsDebug, "://") {
			xdsDebug = "http://" + xdsDebug
		}
		return &http.Client{}, strings.TrimSuffix(xdsDebug, "/"), nil
	}
	if _, err := runningMesh(stateDir); err != nil {
		return nil, "", err
	}
	sock := filepath.Join(stateDirOr(stateDir), local.MonitoringSocketName)
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}, "http://controlplane", nil
}

func fetchSyncz(ctx context.Context, c *http.Client, base string) ([]byte, *controlplane.Syncz, error) {
	url := base + controlplane.SynczPath
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("bad --xds-debug address: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach the control plane's monitoring server: %w (is it running, with a monitoring address?)", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s (a control plane older than proxy-status, or not a control plane's monitoring address?)", url, resp.Status)
	}
	var sz controlplane.Syncz
	if err := json.Unmarshal(raw, &sz); err != nil {
		return nil, nil, fmt.Errorf("decoding %s: %w", url, err)
	}
	return raw, &sz, nil
}

// proxyName is istioctl's pod.namespace from a sidecar node id
// (type~ip~pod.namespace~domain); other ids are shown whole.
func proxyName(node string) string {
	if parts := strings.Split(node, "~"); len(parts) == 4 && parts[2] != "" {
		return parts[2]
	}
	return node
}

func printProxyStatus(w io.Writer, sz *controlplane.Syncz, cluster string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCLUSTER\tCDS\tLDS\tEDS\tRDS\tISTIOD\tVERSION")
	var nacks []string
	for _, p := range sz.Proxies {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", proxyName(p.Node), cluster,
			p.CDS.State, p.LDS.State, p.EDS.State, p.RDS.State, sz.ControlPlane, strconv.FormatUint(p.Version, 10))
		for _, t := range []struct {
			name string
			ts   xds.TypeSync
		}{{"CDS", p.CDS}, {"LDS", p.LDS}, {"EDS", p.EDS}, {"RDS", p.RDS}} {
			if t.ts.NACK != "" {
				nacks = append(nacks, fmt.Sprintf("%s %s rejected: %s", proxyName(p.Node), t.name, t.ts.NACK))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range nacks {
		fmt.Fprintln(w, n)
	}
	return nil
}
