package local

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const modulePath = "github.com/trellismesh/trellis"

// FindProxy finds the trellis-proxy binary: beside the trellis binary
// (how releases ship), else — when trellis itself runs from a source
// checkout with `go run` — built from that checkout into the state dir,
// else on PATH.
func FindProxy(stateDir string, con *console) (string, error) {
	exe, err := os.Executable()
	if err == nil {
		p := filepath.Join(filepath.Dir(exe), "trellis-proxy")
		if isExecutable(p) {
			return p, nil
		}
	}
	// `go run` puts the binary in a go-build temporary folder; building
	// from the checkout then gives a proxy of the same source.
	if err == nil && strings.Contains(exe, string(filepath.Separator)+"go-build") {
		if root := moduleRoot(); root != "" {
			return buildProxy(root, stateDir, con)
		}
	}
	if p, err := exec.LookPath("trellis-proxy"); err == nil {
		return p, nil
	}
	if root := moduleRoot(); root != "" {
		return buildProxy(root, stateDir, con)
	}
	return "", fmt.Errorf("%w beside %s or on PATH: install it (go install %s/cmd/trellis-proxy@latest) or run from a source checkout", errNoProxy, exe, modulePath)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// moduleRoot is the Trellis checkout holding the working directory, or "".
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			first, _, _ := bytes.Cut(b, []byte("\n"))
			if strings.TrimSpace(string(first)) == "module "+modulePath && isDir(filepath.Join(dir, "cmd", "trellis-proxy")) {
				return dir
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func buildProxy(root, stateDir string, con *console) (string, error) {
	out := filepath.Join(stateDir, "bin", "trellis-proxy")
	con.printf("building trellis-proxy from %s into %s (go build; cached after the first time)", root, out)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/trellis-proxy")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cannot build trellis-proxy (%w): %s", err, strings.TrimSpace(string(b)))
	}
	return out, nil
}
