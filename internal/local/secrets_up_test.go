package local_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/local"
	"github.com/trellismesh/trellis/internal/testing/uptest"
)

// The shell `trellis up` runs in holds a token and a proxy setting; no
// container of the mesh gets them (read from each process's
// /proc/PID/environ: only the explicit-mode app's HTTP_PROXY, the
// sidecar's), and neither mesh.json, `trellis status -o json` nor
// `trellis exec ... env` shows the token or any other undeclared value. A state dir left world-readable is made
// private: 0700 folders, 0600 files.
func TestUpKeepsShellSecretsOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a mesh")
	}
	const secret = "ghp_e2eShellSecret0123456789"
	t.Setenv("GITHUB_TOKEN", secret)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret+"-aws")
	t.Setenv("HTTP_PROXY", "http://corp-proxy.example:3128")
	inEachMode(t, func(t *testing.T, flags []string) {
		// Short: Unix socket paths are limited, and t.TempDir's are long.
		sd, err := os.MkdirTemp("", "tup-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(sd) })
		if err := os.Chmod(sd, 0o755); err != nil {
			t.Fatal(err)
		}
		m := uptest.Start(t, "testdata/apphealth", append(flags, "--state-dir", sd)...)
		st := readState(t, m)

		web := pod(t, st, "web")
		for _, p := range st.Pods {
			for _, c := range p.Containers {
				env, err := local.ContainerEnv(&c)
				if err != nil {
					t.Fatalf("%s/%s: %v", p.Name, c.Name, err)
				}
				all := strings.Join(env, "\n")
				if strings.Contains(all, secret) {
					t.Errorf("%s/%s got the shell's secret:\n%s", p.Name, c.Name, all)
				}
				if !strings.Contains(all, "\nHOME=") && !strings.HasPrefix(all, "HOME=") {
					t.Errorf("%s/%s has no HOME:\n%s", p.Name, c.Name, all)
				}
				// The proxy settings are the mesh's: the sidecar's address for a
				// meshed app in explicit mode, none otherwise (never the shell's).
				proxy := ""
				for _, kv := range env {
					if v, ok := strings.CutPrefix(kv, "HTTP_PROXY="); ok {
						proxy = v
					}
				}
				want := ""
				if len(flags) == 0 && p.Sidecar != nil && !c.Sidecar {
					want = "http://" + p.IP + ":15001"
				}
				if proxy != want {
					t.Errorf("%s/%s has HTTP_PROXY %q, want %q", p.Name, c.Name, proxy, want)
				}
			}
		}
		// What the state shows of the app: its declared env, nothing more.
		if got, want := strings.Join(web.Containers[0].Env, " "), "FROM_CM=cm-value GREETING=hello POD_IP="+web.IP; got != want {
			t.Errorf("web's env in mesh.json is %q, want %q", got, want)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		status, errOut, code := m.Trellis(ctx, "status", "-o", "json")
		if code != 0 {
			t.Fatalf("trellis status -o json: exit %d: %s", code, errOut)
		}
		meshJSON, err := os.ReadFile(filepath.Join(sd, "mesh.json"))
		if err != nil {
			t.Fatal(err)
		}
		for what, out := range map[string]string{"trellis status -o json": status, "mesh.json": string(meshJSON)} {
			for _, leak := range []string{secret, "HOME=", "PATH=", "HTTP_PROXY="} {
				if strings.Contains(out, leak) {
					t.Errorf("%s shows %q:\n%s", what, leak, out)
				}
			}
		}

		// exec runs with the container's own environment.
		env, errOut, code := m.Trellis(ctx, "exec", "web", "--", "env")
		if code != 0 {
			t.Fatalf("trellis exec web -- env: exit %d: %s", code, errOut)
		}
		for _, want := range []string{"GREETING=hello", "FROM_CM=cm-value", "HOSTNAME=" + web.Name, "POD_IP=" + web.IP} {
			if !strings.Contains(env, want+"\n") {
				t.Errorf("trellis exec web -- env lacks %s:\n%s", want, env)
			}
		}
		if strings.Contains(env, secret) {
			t.Errorf("trellis exec web -- env shows the shell's secret:\n%s", env)
		}

		checkPrivate(t, sd)
	})
}

// checkPrivate: every folder of the state dir 0700, every regular file
// 0600 (sockets and the proxy binary aside).
func checkPrivate(t *testing.T, sd string) {
	t.Helper()
	var files bytes.Buffer
	err := filepath.WalkDir(sd, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(sd, p)
		files.WriteString(rel + " " + fi.Mode().String() + "\n")
		switch {
		case fi.IsDir():
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", rel, fi.Mode().Perm())
			}
		case fi.Mode().IsRegular() && rel != filepath.Join("bin", "trellis-proxy"):
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", rel, fi.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mesh.json", "lock", "logs/controlplane.log", "logs/default/web-0/web.log"} {
		if !strings.Contains(files.String(), want+" ") {
			t.Errorf("the state dir has no %s:\n%s", want, files.String())
		}
	}
}
