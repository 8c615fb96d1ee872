package lifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/warrenvpn/warren/device/host"
)

// PIDFile is the path of the pid file of interface name in dir: `warren down`
// sends SIGTERM to the pid it holds.
func PIDFile(dir, name string) string { return filepath.Join(dir, name+".pid") }

// JournalFile is the path of the crash journal of interface name in dir.
func JournalFile(dir, name string) string { return filepath.Join(dir, name+".host") }

func (t *Tunnel) pidFile() string { return PIDFile(t.opts.RunDir, t.name) }

func (t *Tunnel) journalFile() string { return JournalFile(t.opts.RunDir, t.name) }

// recoverCrashed is step 4: it refuses to start a second instance of the
// interface, and restores what an instance killed without cleanup left
// behind (RELIABILITY L6).
func (t *Tunnel) recoverCrashed(nl host.Netlink) error {
	if b, err := os.ReadFile(t.pidFile()); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != os.Getpid() && isRunning(pid) {
			return fmt.Errorf("%s is already up (pid %d)", t.name, pid)
		}
		os.Remove(t.pidFile())
	}
	b, err := os.ReadFile(t.journalFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var j host.Journal
	if err := json.Unmarshal(b, &j); err != nil {
		t.log.Warn("ignoring a malformed crash journal", "file", t.journalFile(), "err", err)
		return t.removeJournal()
	}
	if err := host.RestoreJournal(nl, t.opts.Sysctl, j); err != nil {
		return fmt.Errorf("restore what a crashed warren left for %s (%s): %w", t.name, t.journalFile(), err)
	}
	t.log.Info("restored the rules and sysctls a crashed warren left behind", "interface", t.name, "rules", len(j.Rules), "sysctls", len(j.Sysctls))
	return t.removeJournal()
}

// writeJournal records the host changes that would outlive a crash.
func (t *Tunnel) writeJournal(j host.Journal) error {
	if j.IsEmpty() {
		return t.removeJournal()
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(t.opts.RunDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(t.journalFile(), b, 0o600)
}

func (t *Tunnel) removeJournal() error {
	if err := os.Remove(t.journalFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// writePIDFile is step 13.
func (t *Tunnel) writePIDFile() error {
	if err := os.MkdirAll(t.opts.RunDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(t.pidFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// removePIDFile removes the pid file unless another instance has replaced
// it.
func (t *Tunnel) removePIDFile() error {
	b, err := os.ReadFile(t.pidFile())
	if err != nil {
		return nil
	}
	if strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		return os.Remove(t.pidFile())
	}
	return nil
}
