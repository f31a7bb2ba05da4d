package local

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// Modes of what `trellis up` keeps in its state dir: only the user who
// runs the mesh reads its pods' commands, env, logs and sockets.
const (
	stateDirMode  os.FileMode = 0o700
	stateFileMode os.FileMode = 0o600
)

// stateSubdirs are the state dir's folders (see the layout in state.go).
var stateSubdirs = []string{"run", "logs", "bin"}

// prepareStateDir creates the state dir and its folders 0700, and
// tightens a state dir left by an older trellis (0755 folders, 0644 logs
// and mesh.json): group and others lose every permission on the dir and
// on what trellis keeps there. It walks only trellis's own entries, never
// the rest of a folder someone pointed --state-dir at.
func prepareStateDir(stateDir string) error {
	for _, d := range append([]string{""}, stateSubdirs...) {
		p := filepath.Join(stateDir, d)
		if err := os.MkdirAll(p, stateDirMode); err != nil {
			return fmt.Errorf("cannot create the state dir: %w", err)
		}
	}
	if err := tighten(stateDir); err != nil {
		return err
	}
	for _, name := range []string{stateFile, lockFile} {
		if err := tighten(filepath.Join(stateDir, name)); err != nil {
			return err
		}
	}
	for _, d := range stateSubdirs {
		err := filepath.WalkDir(filepath.Join(stateDir, d), func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return tighten(p)
		})
		if err != nil {
			return fmt.Errorf("cannot make the state dir private: %w", err)
		}
	}
	return nil
}

// tighten drops group and other permissions from p (not following a
// symlink: a link's target is not trellis's). A missing p is fine.
func tighten(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot check the state dir's permissions: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(p, fi.Mode().Perm()&^0o077); err != nil {
		return fmt.Errorf("%s is readable by other users (mode %v) and cannot be made private (%w): chmod go-rwx it, or use another --state-dir", p, fi.Mode().Perm(), err)
	}
	return nil
}

// ContainerEnv is the environment a running container's process was
// started with, read from /proc/PID/environ: what `trellis exec` runs a
// command with. mesh.json records only the declared env (ContainerState.Env),
// never the rest, so the full environment is only where the process is.
func ContainerEnv(c *ContainerState) ([]string, error) {
	if c.PID <= 0 || processStartTime(c.PID) != c.StartTime || c.StartTime == 0 {
		return nil, fmt.Errorf("container %s is not running (%s %s): start it again, or wait for its restart", c.Name, c.State, c.Reason)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.PID) + "/environ")
	if err != nil {
		return nil, fmt.Errorf("cannot read container %s's environment (run trellis as the user who ran trellis up): %w", c.Name, err)
	}
	var env []string
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		if len(kv) > 0 {
			env = append(env, string(kv))
		}
	}
	return env, nil
}
