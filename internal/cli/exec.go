package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trellismesh/trellis/internal/local"
)

func newExecCmd() *cobra.Command {
	var (
		namespace string
		container string
		stateDir  string
	)
	cmd := &cobra.Command{
		Use:   "exec [-n NAMESPACE] [-c CONTAINER] POD|DEPLOYMENT -- COMMAND [ARGS...]",
		Short: "Run a command as a container of a running local mesh's pod",
		Long: `Exec runs COMMAND with the network view and environment of one container of a
pod that 'trellis up' runs: its env (POD_IP, the HTTP_PROXY that points at
the pod's sidecar, ...), its working directory, and stdin, stdout and stderr
attached. A Deployment name means its first ready pod. The exit status is
COMMAND's.`,
		Example: `  # Call the reviews service from the sleep pod, through the mesh
  trellis exec sleep -- curl -s http://reviews:9080/reviews/0

  # Run as the proxy container of a pod
  trellis exec -c trellis-proxy reviews-v1-0 -- env`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if len(args) < 2 || dash != 1 {
				return usageError(cmd, errors.New("name one pod or deployment, then -- and the command, e.g. trellis exec sleep -- curl -s http://reviews:9080/"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := runningMesh(stateDir)
			if err != nil {
				return err
			}
			pod, err := st.FindPod(namespace, args[0])
			if err != nil {
				return err
			}
			c, err := pickContainer(pod, container)
			if err != nil {
				return err
			}
			env, err := local.ContainerEnv(c)
			if err != nil {
				return err
			}
			path, err := local.LookPath(args[1], env)
			if err != nil {
				return err
			}
			run := &exec.Cmd{Path: path, Args: args[1:], Env: env, Dir: c.Dir, Stdin: cmd.InOrStdin(), Stdout: cmd.OutOrStdout(), Stderr: cmd.ErrOrStderr()}
			if pod.NetNS != "" {
				// Transparent mode: inside the pod's namespaces, through
				// trellis itself, as the pod's own processes start.
				self, err := os.Executable()
				if err != nil {
					return err
				}
				resolv := pod.Resolv
				if resolv == "" {
					resolv = "-"
				}
				run.Args = append([]string{self, local.EnterCommand, pod.NetNS, resolv, "-", "--", path}, args[2:]...)
				run.Path = self
			}
			if err := run.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return exitCode(ee.ExitCode())
				}
				return fmt.Errorf("cannot run %s in pod %s: %w", args[1], pod.Name, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "the pod's namespace")
	cmd.Flags().StringVarP(&container, "container", "c", "", "the container (default: the pod's first app container)")
	stateDirFlag(cmd, &stateDir)
	return cmd
}

// pickContainer finds a container by name, or the first app container.
func pickContainer(p *local.PodState, name string) (*local.ContainerState, error) {
	var names []string
	for i := range p.Containers {
		c := &p.Containers[i]
		if (name == "" && !c.Sidecar) || c.Name == name {
			return c, nil
		}
		names = append(names, c.Name)
	}
	if name == "" {
		return nil, fmt.Errorf("pod %s has no app container", p.Name)
	}
	return nil, fmt.Errorf("pod %s has no container %q (it has: %s)", p.Name, name, strings.Join(names, ", "))
}

// stateDirFlag adds --state-dir to a command that finds a running mesh.
func stateDirFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "state-dir", "", "the state dir of the mesh (default $"+local.StateDirEnv+" or ./.trellis)")
}

func stateDirOr(p string) string {
	if p == "" {
		return local.DefaultStateDir()
	}
	return p
}
