package cli

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/local"
)

func newStatusCmd() *cobra.Command {
	var (
		output   string
		stateDir string
	)
	cmd := &cobra.Command{
		Use:   "status [-o json]",
		Short: "Show the pods of a running local mesh and their sidecars' sync state",
		Long: `Status lists the pods that 'trellis up' runs, as 'kubectl get pods -o wide'
and 'istioctl proxy-status' would together: namespace, name, ready
containers, status, restarts, age, pod IP, the SPIFFE identity in the
certificate the mesh CA issues the pod's sidecar (spiffe://<trust
domain>/ns/<namespace>/sa/<service account>; - for a pod without a sidecar),
and whether the pod's sidecar runs the control plane's latest config:

  SYNCED    the sidecar has ACKed its latest config
  NOT SENT  the sidecar is not connected to the control plane (yet)
  STALE     config was sent and not ACKed yet
  NACK      the sidecar rejected its config (the reason follows)
  -         the pod has no sidecar

The sidecars enforce PeerAuthentication, AuthorizationPolicy and
RequestAuthentication. When a policy that selects a pod uses a field that
is not enforced (docs/config.md marks it NOT ENFORCED, e.g. an
AuthorizationPolicy condition on experimental.envoy.filters.*), a POLICY column says "NOT
ENFORCED" and names the policy; when every policy is enforced there is no
POLICY column.

-o json prints the mesh's state as 'trellis up' records it (mesh.json in
the state dir).`,
		Example: `  trellis status
  trellis status -o json | jq '.pods[] | {name, ip, ready}'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageError(cmd, errors.New("status takes no arguments"))
			}
			if output != "" && output != "json" && output != "wide" {
				return usageError(cmd, fmt.Errorf("unknown output format %q: use -o json, or no -o for the table", output))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := runningMesh(stateDir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				b, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			}
			switch {
			case st.Stopping:
				fmt.Fprintf(cmd.ErrOrStderr(), "the mesh from %s is stopping\n", st.Dir)
			case !st.Ready:
				fmt.Fprintf(cmd.ErrOrStderr(), "the mesh from %s is starting (not ready yet)\n", st.Dir)
			}
			if len(st.Pods) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no pods")
				return nil
			}
			return printStatus(out, st, time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json, or wide (the table, the default)")
	stateDirFlag(cmd, &stateDir)
	return cmd
}

// runningMesh reads the state of the mesh on stateDir (the flag's value,
// empty for the default), and fails unless its `trellis up` is running.
func runningMesh(stateDir string) (*local.State, error) {
	sd := stateDirOr(stateDir)
	st, err := local.ReadState(sd)
	if err != nil {
		return nil, err
	}
	if !st.Running() {
		return nil, notRunning(sd, st)
	}
	return st, nil
}

// notRunning is the error for a mesh whose `trellis up` is gone.
func notRunning(stateDir string, st *local.State) error {
	return fmt.Errorf("no mesh is running on state dir %s (the last one, from %s, has stopped): start it with `trellis up %s`", stateDir, st.Dir, st.Dir)
}

func printStatus(w io.Writer, st *local.State, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	policies := false
	for _, p := range st.Pods {
		policies = policies || len(p.Unenforced) > 0
	}
	header := "NAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tAGE\tIP\tIDENTITY\tPROXY"
	if policies {
		header += "\tPOLICY"
	}
	fmt.Fprintln(tw, header)
	for _, p := range st.Pods {
		ready, total, restarts := 0, 0, 0
		for _, c := range p.Containers {
			restarts += c.Restarts
			if c.Init {
				continue
			}
			total++
			if c.Ready {
				ready++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%d\t%s\t%s\t%s\t%s",
			p.Namespace, p.Name, ready, total, p.Status, restarts, age(now.Sub(p.Created)), p.IP, cmp.Or(p.Identity, "-"), proxySync(p.Sidecar))
		if policies {
			note := "-"
			if len(p.Unenforced) > 0 {
				note = "NOT ENFORCED: " + strings.Join(p.Unenforced, ", ")
			}
			fmt.Fprintf(tw, "\t%s", note)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// proxySync is a sidecar's sync state in istioctl proxy-status's words.
func proxySync(s *local.SidecarState) string {
	switch {
	case s == nil:
		return "-"
	case !s.Connected:
		return "NOT SENT"
	case s.Synced:
		return "SYNCED"
	case s.LastNACK != "":
		return "NACK: " + strings.Join(strings.Fields(s.LastNACK), " ")
	default:
		return "STALE"
	}
}

// age is a duration as kubectl prints it: 45s, 3m12s, 5h3m, 2d4h.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 10*time.Minute:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 3*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
