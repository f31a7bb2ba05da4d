package local

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Secret-looking values in the environment `trellis up` runs in.
var shellSecrets = []string{
	"AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI-shell-secret",
	"GITHUB_TOKEN=ghp_shellsecrettoken",
	"GOFLAGS=-shell-only",
}

// A container gets the kubelet-like base (HOME, LANG, TMPDIR, TERM and
// PATH led by the mesh's dirs) from trellis's environment, nothing else
// of it.
func TestBaseEnvIsMinimal(t *testing.T) {
	host := append([]string{"HOME=/home/u", "LANG=C.UTF-8", "TMPDIR=/tmp/u", "TERM=xterm", "PATH=/usr/bin:/bin", "USER=u", "SSH_AUTH_SOCK=/tmp/agent", "HTTP_PROXY=http://corp:3128"}, shellSecrets...)
	got := baseEnv(host, []string{"/mesh", "/opt/trellis"})
	want := []string{"HOME=/home/u", "LANG=C.UTF-8", "TMPDIR=/tmp/u", "TERM=xterm", "PATH=/mesh:/opt/trellis:/usr/bin:/bin"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("base env (-want +got):\n%s", d)
	}
	// Nothing set: a runtime's defaults, still led by the mesh's dirs.
	got = baseEnv([]string{"AWS_SECRET_ACCESS_KEY=x"}, []string{"/mesh"})
	want = []string{"HOME=/", "PATH=/mesh:" + defaultPath}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("base env of an empty environment (-want +got):\n%s", d)
	}
}

const secretsPod = `apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {FROM_CM: "cm-value"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: x
        command: [server, "--home=$(HOME)", "--greeting=$(GREETING)"]
        envFrom: [{configMapRef: {name: cfg}}]
        env:
        - {name: GREETING, value: hello}
        - name: MY_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
`

// mesh.json (what `trellis status -o json` prints) records a container's
// declared env and nothing else: not the base, not the mesh's additions,
// not the shell's; the processes still get all of those but the shell's.
// Its command is expanded against the declared env only, as a kubelet
// does, so no base value lands in it either.
func TestStateRecordsDeclaredEnvOnly(t *testing.T) {
	host := append([]string{"HOME=/home/u", "PATH=/usr/bin"}, shellSecrets...)
	stateDir := t.TempDir()
	s := &supervisor{dir: "/mesh", stateDir: stateDir, xdsSocket: filepath.Join(stateDir, "xds.sock"), proxyPath: "/bin/trellis-proxy", mode: "explicit", baseEnv: baseEnv(host, []string{"/mesh"})}
	w := onlyWorkload(t, secretsPod)
	p := s.newPod(w, "web-0", netip.MustParseAddr("127.10.0.5"))

	app := p.apps[0]
	processEnv := strings.Join(app.env, "\n")
	for _, want := range []string{"HOME=/home/u", "HOSTNAME=web-0", "HTTP_PROXY=http://127.10.0.5:15001", "GREETING=hello", "FROM_CM=cm-value", "MY_IP=127.10.0.5"} {
		if !strings.Contains(processEnv, want) {
			t.Errorf("the app's process env lacks %s:\n%s", want, processEnv)
		}
	}
	for _, c := range []*container{app, p.sidecar} {
		for _, secret := range shellSecrets {
			if strings.Contains(strings.Join(c.env, "\n"), secret) {
				t.Errorf("container %s gets the shell's %s", c.spec.Name, secret)
			}
		}
	}

	st := p.state()
	var got [][]string
	for _, c := range st.Containers {
		got = append(got, c.Env)
	}
	want := [][]string{{"FROM_CM=cm-value", "GREETING=hello", "MY_IP=127.10.0.5"}, nil}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("env in the state of the app and the sidecar (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"server", "--home=$(HOME)", "--greeting=hello"}, st.Containers[0].Command); d != "" {
		t.Errorf("command in the state (-want +got):\n%s", d)
	}

	if err := writeState(stateDir, &State{Pods: []PodState{st}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range append([]string{"/home/u", "/usr/bin", "HTTP_PROXY"}, shellSecrets...) {
		if strings.Contains(string(b), leak) {
			t.Errorf("mesh.json holds %q:\n%s", leak, b)
		}
	}
}

// A fresh state dir is 0700 with 0700 folders; one left 0755 with 0644
// files by an older trellis is tightened, and only trellis's entries are
// touched.
func TestPrepareStateDirIsPrivate(t *testing.T) {
	fresh := filepath.Join(t.TempDir(), "state")
	if err := prepareStateDir(fresh); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "run", "logs", "bin"} {
		assertMode(t, filepath.Join(fresh, d), 0o700)
	}

	old := t.TempDir()
	for _, d := range []string{"logs/default/web-0", "run"} {
		if err := os.MkdirAll(filepath.Join(old, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []string{stateFile, lockFile, "logs/controlplane.log", "logs/default/web-0/web.log"}
	for _, f := range append(files, "notes.txt") {
		if err := os.WriteFile(filepath.Join(old, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range append([]string{old}, filepath.Join(old, "logs"), filepath.Join(old, "logs/default/web-0")) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := prepareStateDir(old); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "run", "logs", "logs/default", "logs/default/web-0"} {
		assertMode(t, filepath.Join(old, d), 0o700)
	}
	for _, f := range files {
		assertMode(t, filepath.Join(old, f), 0o600)
	}
	assertMode(t, filepath.Join(old, "notes.txt"), 0o644)
}

func assertMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", p, got, want)
	}
}
