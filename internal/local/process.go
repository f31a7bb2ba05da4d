package local

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// procSpec is one process to start.
type procSpec struct {
	name    string // "pod/container", the prefix of its console lines
	argv    []string
	env     []string
	dir     string
	logPath string
	console *console
	// enter, when set, runs the process inside a pod's namespaces
	// (transparent mode) by rewriting the command; nil runs it as is.
	enter func(*exec.Cmd)
	// extraFiles, when set, makes the files the process inherits as
	// descriptors 3, 4, ...; called at each start and closed here once
	// the process has them (the sidecar's credential pipe, identity.go).
	extraFiles func() ([]*os.File, error)
}

// proc is a started process. Its process group is its own, so stopping
// it also stops whatever it started (a shell's children, `go run`'s
// binary).
type proc struct {
	cmd   *exec.Cmd
	pid   int
	start uint64
	log   *os.File
	done  chan struct{}
	err   error // valid once done is closed
}

func startProc(s procSpec) (*proc, error) {
	if len(s.argv) == 0 {
		return nil, errors.New("no command")
	}
	if err := os.MkdirAll(filepath.Dir(s.logPath), stateDirMode); err != nil {
		return nil, fmt.Errorf("cannot create the log folder: %w", err)
	}
	lf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, stateFileMode)
	if err != nil {
		return nil, fmt.Errorf("cannot open the log: %w", err)
	}
	path, err := LookPath(s.argv[0], s.env)
	if err != nil {
		lf.Close()
		return nil, err
	}
	cmd := &exec.Cmd{Path: path, Args: s.argv, Env: s.env, Dir: s.dir}
	out := io.Writer(lf)
	if s.console != nil {
		out = io.MultiWriter(lf, s.console.writer(s.name))
	}
	// One writer for both, so exec uses one pipe and lines keep their order.
	cmd.Stdout, cmd.Stderr = out, out
	// A process that leaves children holding its output would block Wait.
	cmd.WaitDelay = 2 * time.Second
	cmd.SysProcAttr = procAttr()
	if s.enter != nil {
		s.enter(cmd)
	}
	if s.extraFiles != nil {
		files, err := s.extraFiles()
		if err != nil {
			lf.Close()
			return nil, err
		}
		cmd.ExtraFiles = files
	}
	err = cmd.Start()
	for _, f := range cmd.ExtraFiles {
		f.Close() // the child has its own copy; ours must not leak
	}
	if err != nil {
		lf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, log: lf, done: make(chan struct{})}
	p.start = processStartTime(p.pid)
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	return p, nil
}

// LookPath resolves a command with the PATH of the environment it will
// run in, not ours: the folder and the trellis binary's directory are on
// the pod's PATH.
func LookPath(name string, env []string) (string, error) {
	if filepath.Base(name) != name {
		return name, nil
	}
	pathList := ""
	for _, kv := range env {
		if len(kv) > 5 && kv[:5] == "PATH=" {
			pathList = kv[5:]
		}
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found on the pod's PATH (%s): give a path, or put the program in the folder or on PATH", name, pathList)
}

// signal sends sig to the process's whole group.
func (p *proc) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.pid, sig)
}

// stop asks the process to end and kills it after grace, as a kubelet
// does; it returns once the process has exited.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		// The group may still hold children that ignored the signal.
		p.signal(syscall.SIGKILL)
	case <-t.C:
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// exitReason words a process's end as kubectl does.
func exitReason(err error) (reason string, code int) {
	if err == nil {
		return "Completed", 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			if ws.Signal() == syscall.SIGKILL {
				return "OOMKilled or killed", 137
			}
			return "Error", 128 + int(ws.Signal())
		}
		return "Error", ee.ExitCode()
	}
	return "Error", -1
}

// killLeftover stops a process a killed `trellis up` left running,
// after checking by start time that the PID still names it.
func killLeftover(pid int, start uint64) bool {
	if pid <= 0 || start == 0 || processStartTime(pid) != start {
		return false
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 50 && processStartTime(pid) == start; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return true
}

// console writes every process's output, one whole line at a time and
// prefixed by its pod and container, as docker compose does.
type console struct {
	mu  sync.Mutex
	out io.Writer
}

func (c *console) writer(prefix string) io.Writer {
	return &prefixWriter{c: c, prefix: []byte(prefix + " | ")}
}

// printf writes one line of trellis's own.
func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.out, format+"\n", args...)
}

type prefixWriter struct {
	c       *console
	prefix  []byte
	partial []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	n := len(b)
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			// Hold a partial line, but never without bound.
			w.partial = append(w.partial, b...)
			if len(w.partial) > 8192 {
				w.flushLocked()
			}
			break
		}
		w.partial = append(w.partial, b[:i]...)
		w.flushLocked()
		b = b[i+1:]
	}
	return n, nil
}

func (w *prefixWriter) flushLocked() {
	line := make([]byte, 0, len(w.prefix)+len(w.partial)+1)
	line = append(append(append(line, w.prefix...), w.partial...), '\n')
	_, _ = w.c.out.Write(line)
	w.partial = w.partial[:0]
}
