package localcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// child is etcd or kube-apiserver, running in its own process group so that a Ctrl-C on the
// terminal reaches keycap only, and keycap stops the children in order (apiserver first).
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	pidPath string
	logFile *os.File
	done    chan struct{}
	waitErr error
}

// startChild starts bin as name, logging to Dir/logs/name.log. deathSignal is what the kernel
// sends the child if keycap dies without stopping it (SIGKILL, a crash): SIGTERM for etcd, which
// holds the data; SIGKILL for the apiserver and the controller manager, which keep nothing of
// their own, because an apiserver shutting down gracefully hangs for good once etcd (signalled at
// the same moment) is gone. (The signal follows the forking thread, and the Go runtime ends a
// thread only when a goroutine locked to it exits, which Start's caller is not.)
func startChild(dir, name string, deathSignal syscall.Signal, bin string, args ...string) (*child, error) {
	logPath := filepath.Join(dir, "logs", name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: deathSignal,
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{
		name:    name,
		cmd:     cmd,
		logPath: logPath,
		pidPath: filepath.Join(dir, "run", name+".pid"),
		logFile: logFile,
		done:    make(chan struct{}),
	}
	if err := os.WriteFile(c.pidPath, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		_ = c.stop(stopTimeout)
		return nil, err
	}
	go func() {
		c.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.waitErr
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the child's process group, waits up to timeout, then SIGKILLs it.
func (c *child) stop(timeout time.Duration) error {
	defer func() { _ = os.Remove(c.pidPath) }()
	if exited, _ := c.exited(); exited {
		return nil
	}
	pgid := c.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.done:
		return nil
	case <-timer.C:
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-c.done
	return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed", c.name, timeout)
}

// logTail returns the last lines of the child's log, for error messages.
func (c *child) logTail() string {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// reapStale handles the pid file of an earlier run. A pid that is dead, reused by an unrelated
// process, or unreadable is forgotten; a live process started for this dir (its command line names
// dir) is terminated, since the caller holds dir's lock and so no live keycap owns it.
func reapStale(pidPath, dir string) (int, bool) {
	data, err := os.ReadFile(pidPath)
	if err != nil {
		return 0, false
	}
	defer func() { _ = os.Remove(pidPath) }()
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
		return pid, false
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	gone := func(context.Context) (bool, error) { return !alive(pid), nil }
	if wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, stopTimeout, true, gone) != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, stopTimeout, true, gone)
	}
	return pid, true
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return !errors.Is(err, syscall.ESRCH)
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}
