package lifecycle

// The run directory holds, per interface and network namespace, a pid file
// and a crash journal. Their names carry the inode of the namespace warren
// runs in (wg0.net-4026531840.pid), since an interface name is unique only
// within its namespace: `warren down wg0` in one namespace must not signal
// the wg0 of another, nor a start there restore another's journal (issue
// 14). `warren up` and `warren down` of one interface run in the same
// namespace and so find the same files. Where the namespace cannot be
// told (no /proc, or not Linux) the names are the interface's alone.
//
// The pid file names the running instance by pid and start time (field 22
// of /proc/PID/stat), so that neither a second `warren up` nor `warren
// down` mistakes another process that got the same pid after a crash for
// warren (issue 14). Up writes it at step 4, before it changes anything on
// the host, and removes it last.
//
// The crash journal lists what would outlive a kill -9: policy rules and
// sysctls (host.Journal), the nftables table and the DNS entry. It is
// written and synced to disk before each such change is made, so every
// point of start-up, reload and shutdown leaves a journal covering what is
// there; the next Up, or Recover (`warren down` of a dead instance),
// restores it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/warrenvpn/warren/device/host"
	"github.com/warrenvpn/warren/uapi"
)

// PIDFile is the path of the pid file of interface name in dir, for the
// network namespace of the calling thread: `warren down` sends SIGTERM to
// the process it names.
func PIDFile(dir, name string) string { return PIDFileIn(dir, name, CurrentNetns()) }

// JournalFile is the path of the crash journal of interface name in dir,
// for the network namespace of the calling thread.
func JournalFile(dir, name string) string { return JournalFileIn(dir, name, CurrentNetns()) }

// PIDFileIn is PIDFile for the network namespace whose inode is netns (0:
// unknown, the interface's name alone).
func PIDFileIn(dir, name string, netns uint64) string { return runFile(dir, name, netns, ".pid") }

// JournalFileIn is JournalFile for the network namespace whose inode is
// netns.
func JournalFileIn(dir, name string, netns uint64) string { return runFile(dir, name, netns, ".host") }

// runFile names a file of interface name in namespace netns. Read from the
// right, the digits before the extension are the inode and the rest before
// ".net-" the name, so no two interfaces or namespaces share a file.
func runFile(dir, name string, netns uint64, ext string) string {
	if netns == 0 {
		return filepath.Join(dir, name+ext)
	}
	return filepath.Join(dir, name+".net-"+strconv.FormatUint(netns, 10)+ext)
}

// CurrentNetns returns the inode of the calling thread's network namespace,
// or 0 where it cannot be told.
func CurrentNetns() uint64 {
	for _, p := range []string{"/proc/thread-self/ns/net", "/proc/self/ns/net"} {
		if ino, err := NetnsInode(p); err == nil {
			return ino
		}
	}
	return 0
}

// The Tunnel's files are named after the namespace it was created in: its
// later steps may run on other threads.
func (t *Tunnel) pidFile() string { return PIDFileIn(t.opts.RunDir, t.name, t.netns) }

func (t *Tunnel) journalFile() string { return JournalFileIn(t.opts.RunDir, t.name, t.netns) }

// inHostNetns reports whether netns is the namespace of pid 1 (the host's;
// readable by root only). There the files of a warren from before
// per-namespace names, NAME.pid and NAME.host, are honoured too: after an
// upgrade, an instance it started is still found and its crash journal
// restored.
func inHostNetns(netns uint64) bool {
	if netns == 0 {
		return false
	}
	ino, err := hostNetns()
	return err == nil && ino == netns
}

// hostNetns returns the inode of the host's network namespace; tests
// replace it.
var hostNetns = func() (uint64, error) { return NetnsInode("/proc/1/ns/net") }

// journalFiles returns the paths of t's crash journals: its own, and in
// the host's namespace the one of an older warren.
func (t *Tunnel) journalFiles() []string {
	if inHostNetns(t.netns) {
		return []string{t.journalFile(), JournalFileIn(t.opts.RunDir, t.name, 0)}
	}
	return []string{t.journalFile()}
}

// pidFiles is journalFiles for the pid files.
func (t *Tunnel) pidFiles() []string {
	if inHostNetns(t.netns) {
		return []string{t.pidFile(), PIDFileIn(t.opts.RunDir, t.name, 0)}
	}
	return []string{t.pidFile()}
}

// running reports the running instance of t's interface, as Running.
func (t *Tunnel) running() (pid int, ok bool) {
	for _, f := range t.pidFiles() {
		if pid, ok := runningAt(f); ok {
			return pid, true
		}
	}
	return 0, false
}

// journal is the crash journal's content. host.Journal's fields are inline,
// so a journal written before the other fields existed still reads.
type journal struct {
	host.Journal
	Firewall string `json:"firewall,omitempty"` // the nftables table warren added
	DNS      bool   `json:"dns,omitempty"`      // whether DNS was handed to the resolver
	// Bridge is the bridge the TAP joined (Mode = tap): whether warren
	// created it and the addresses it put on it.
	Bridge *bridgeJournal `json:"bridge,omitempty"`
}

func (j *journal) isEmpty() bool {
	return j.Journal.IsEmpty() && j.Firewall == "" && !j.DNS && j.Bridge == nil
}

// Running returns the pid of the running instance of interface name whose
// pid file is in dir, and whether there is one: the file names a live
// process with the start time recorded. A pid file without a start time, or
// whose process is gone or started at another time, names no instance.
func Running(dir, name string) (pid int, ok bool) {
	return (&Tunnel{name: name, opts: Options{RunDir: dir}, netns: CurrentNetns()}).running()
}

// runningAt is Running for the pid file at path.
func runningAt(path string) (pid int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, false
	}
	start, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	cur, err := processStart(pid)
	if err != nil || cur != start {
		return 0, false
	}
	return pid, true
}

// recoverCrashed is step 4: it refuses to start a second instance of the
// interface, and restores what an instance killed without cleanup left
// behind (RELIABILITY L6).
func (t *Tunnel) recoverCrashed(nl host.Netlink) error {
	if pid, ok := t.running(); ok && pid != os.Getpid() {
		return fmt.Errorf("%s is already up (pid %d)", t.name, pid)
	}
	for _, f := range t.pidFiles() {
		os.Remove(f) // stale; a failure shows when step 5 writes it
	}
	for _, f := range t.journalFiles() {
		j, err := readJournal(f)
		if err != nil {
			return err
		}
		if j == nil {
			continue
		}
		if err := t.restore(nl, j, f); err != nil {
			return err
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// readJournal reads the journal at path; nil if there is none. A malformed
// journal is treated as none.
func readJournal(path string) (*journal, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return &journal{}, nil
	}
	return &j, nil
}

// restore undoes what the journal j (read from path) of a dead instance
// records: its rules and sysctls, its nftables table and its DNS entry.
func (t *Tunnel) restore(nl host.Netlink, j *journal, path string) error {
	var errs []error
	if err := host.RestoreJournal(nl, t.opts.Sysctl, j.Journal); err != nil {
		errs = append(errs, err)
	}
	if j.Firewall != "" {
		if err := t.opts.Firewall.Remove(j.Firewall); err != nil {
			errs = append(errs, err)
		}
	}
	if j.DNS {
		if err := t.opts.DNS.Unset(t.name); err != nil {
			errs = append(errs, err)
		}
	}
	if j.Bridge != nil {
		if err := restoreBridge(nl, j.Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore what a crashed warren left for %s (%s): %w", t.name, path, err)
	}
	if !j.isEmpty() {
		t.log.Info("restored what a crashed warren left behind", "interface", t.name,
			"rules", len(j.Rules), "sysctls", len(j.Sysctls), "nft_table", j.Firewall, "dns", j.DNS)
	}
	return nil
}

// Recover restores what a dead instance of interface name left behind, as
// its crash journal in opts.RunDir records it (rules, sysctls, the nftables
// table, DNS), and removes its journal, pid file and (with the default
// control socket) the socket it left: `warren down` of an instance that
// was killed. It reports whether there was anything to
// restore, and refuses while an instance is running.
func Recover(name string, opts Options) (bool, error) {
	defaultSocket := opts.ListenControl == nil
	t := newTunnel(name, opts)
	if pid, ok := t.running(); ok {
		return false, fmt.Errorf("%s is running (pid %d)", name, pid)
	}
	found := false
	for _, f := range t.journalFiles() {
		j, err := readJournal(f)
		if err != nil {
			return false, err
		}
		if j == nil {
			continue
		}
		found = true
		nl, err := t.opts.OpenNetlink()
		if err != nil {
			return false, fmt.Errorf("netlink: %w", err)
		}
		err = t.restore(nl, j, f)
		nl.Close()
		if err != nil {
			return false, err
		}
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	for _, f := range t.pidFiles() {
		err := os.Remove(f)
		if err == nil {
			found = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	if defaultSocket {
		removeStaleSocket(uapi.SocketPath(uapi.DefaultDir, name))
	}
	return found, nil
}

// removeStaleSocket removes the control socket at path if nothing listens
// on it any more (its daemon was killed), so that `wg show` no longer
// lists the interface.
func removeStaleSocket(path string) {
	c, err := net.Dial("unix", path)
	if err == nil {
		c.Close()
		return
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		os.Remove(path)
	}
}

// updateJournal changes the journal with f and stores it durably before it
// returns (written to a temporary file, synced, renamed over the journal,
// the directory synced); an empty journal is removed. It then calls the
// Step hook with "journal".
func (t *Tunnel) updateJournal(f func(j *journal)) error {
	t.jr.Lock()
	defer t.jr.Unlock()
	next := t.jr.j
	f(&next)
	if err := t.storeJournal(&next); err != nil {
		return err
	}
	t.jr.j = next
	t.opts.Step("journal")
	return nil
}

// storeJournal writes j to the journal file durably.
func (t *Tunnel) storeJournal(j *journal) error {
	if j.isEmpty() {
		return t.removeJournal()
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return writeFileSync(t.journalFile(), b, 0o600)
}

// writeFileSync replaces the file at path with b, atomically and durably.
func writeFileSync(path string, b []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (t *Tunnel) removeJournal() error {
	if err := os.Remove(t.journalFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// claimPIDFile writes the pid file, right after the adapter is open (step
// 5): before any change that outlives the process, and after the TUN, so
// that a user without privileges hears about the TUN first. Its undo runs
// last.
func (t *Tunnel) claimPIDFile() error {
	if err := t.writePIDFile(); err != nil {
		return err
	}
	t.undo.push(t.removePIDFile)
	return nil
}

// writePIDFile writes this process's pid and start time.
func (t *Tunnel) writePIDFile() error {
	start, err := processStart(os.Getpid())
	if err != nil {
		start = 0 // no /proc: Running never trusts this file
	}
	return writeFileSync(t.pidFile(), fmt.Appendf(nil, "%d %d\n", os.Getpid(), start), 0o644)
}

// removePIDFile removes the pid file unless another instance has replaced
// it.
func (t *Tunnel) removePIDFile() error {
	b, err := os.ReadFile(t.pidFile())
	if err != nil {
		return nil
	}
	if f := strings.Fields(string(b)); len(f) > 0 && f[0] == strconv.Itoa(os.Getpid()) {
		return os.Remove(t.pidFile())
	}
	return nil
}
