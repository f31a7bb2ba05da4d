package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/local"
)

func newLogsCmd() *cobra.Command {
	var (
		namespace string
		container string
		follow    bool
		stateDir  string
	)
	cmd := &cobra.Command{
		Use:   "logs [-n NAMESPACE] [-c CONTAINER] [-f] POD|DEPLOYMENT",
		Short: "Print the log of a container of a local mesh's pod",
		Long: `Logs prints what one container of a pod that 'trellis up' runs has written
(stdout and stderr, kept in the state dir under logs/NAMESPACE/POD/, across
restarts). The default container is the pod's first app container;
-c trellis-proxy is its sidecar. A Deployment name means its first ready
pod. With -f, logs keeps printing what the container writes until Ctrl-C
or until the mesh stops.`,
		Example: `  # What the reviews v1 pod logged
  trellis logs reviews-v1-0

  # Follow the frontend's sidecar
  trellis logs -f -c trellis-proxy frontend`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(cmd, errors.New("name one pod or deployment, e.g. trellis logs reviews-v1-0"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			sd := stateDirOr(stateDir)
			st, err := local.ReadState(sd)
			if err != nil {
				return err
			}
			path, err := logPath(sd, st, namespace, args[0], container)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !follow {
				f, err := os.Open(path)
				if errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("%s has written no log yet (%s does not exist): try again once it runs, or follow it with -f", args[0], path)
				}
				if err != nil {
					return err
				}
				defer f.Close()
				_, err = io.Copy(out, f)
				return err
			}
			if !st.Running() {
				return notRunning(sd, st)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := followLog(ctx, out, path, st.Running, 200*time.Millisecond); err != nil {
				return err
			}
			if ctx.Err() == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "the mesh has stopped")
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "the pod's namespace")
	cmd.Flags().StringVarP(&container, "container", "c", "", "the container (default: the pod's first app container)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing the log as it grows")
	stateDirFlag(cmd, &stateDir)
	return cmd
}

// logPath finds the log of a container. The logs stay in the state dir
// after the mesh stops, so a pod that mesh.json no longer lists is looked
// for there too.
func logPath(stateDir string, st *local.State, ns, name, container string) (string, error) {
	pod, err := st.FindPod(ns, name)
	if err == nil {
		c, err := pickContainer(pod, container)
		if err != nil {
			return "", err
		}
		return c.Log, nil
	}
	if st.Running() {
		return "", err
	}
	dir := filepath.Join(stateDir, "logs", ns, name)
	if container != "" {
		p := filepath.Join(dir, container+".log")
		if _, serr := os.Stat(p); serr == nil {
			return p, nil
		}
		return "", notRunning(stateDir, st)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var apps []string
	for _, l := range logs {
		if filepath.Base(l) != "trellis-proxy.log" {
			apps = append(apps, l)
		}
	}
	if len(apps) == 1 {
		return apps[0], nil
	}
	if len(apps) > 1 {
		var names []string
		for _, a := range apps {
			names = append(names, strings.TrimSuffix(filepath.Base(a), ".log"))
		}
		return "", fmt.Errorf("pod %s of the stopped mesh left logs of several containers: name one with -c (%s)", name, strings.Join(names, ", "))
	}
	return "", fmt.Errorf("%w; the mesh has stopped, and %s holds no log of a pod %s", notRunning(stateDir, st), filepath.Join(stateDir, "logs", ns), name)
}

// followLog prints the file at path and then what is appended to it,
// polling every interval, until ctx ends or running says the writer is
// gone (what was written by then is printed first). A file that does not
// exist yet is waited for; one truncated or replaced is read from its
// start.
func followLog(ctx context.Context, w io.Writer, path string, running func() bool, interval time.Duration) error {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var off int64
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		alive := running()
		if fi, err := os.Stat(path); err == nil {
			if f != nil {
				if cur, err := f.Stat(); err != nil || !os.SameFile(cur, fi) || fi.Size() < off {
					f.Close()
					f = nil
				}
			}
			if f == nil {
				if f, err = os.Open(path); err != nil {
					return err
				}
				off = 0
			}
			n, err := io.Copy(w, f)
			off += n
			if err != nil {
				return err
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if !alive {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
