package lifecycle_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/lifecycle"
)

// TestRunDirLegacy: in the host's network namespace the files of a warren
// from before per-namespace names (NAME.pid, NAME.host) still count, so
// that after an upgrade an instance it started is found and its journal
// restored.
func TestRunDirLegacy(t *testing.T) {
	ours := lifecycle.CurrentNetns()
	if ours == 0 {
		t.Skip("no network namespaces here")
	}
	// Pid 1's namespace may be unreadable (a sandbox): take ours for the
	// host's.
	defer lifecycle.SetHostNetns(ours)()
	cfg := testConfig(t)
	dir := t.TempDir()
	legacyPID, legacyJournal := lifecycle.PIDFileIn(dir, testName, 0), lifecycle.JournalFileIn(dir, testName, 0)
	if legacyPID == lifecycle.PIDFile(dir, testName) {
		t.Fatalf("the pid file has no namespace in its name: %s", legacyPID)
	}
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Skipf("no process to stand for the running instance: %v", err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })
	writeFile(t, legacyPID, fmt.Sprintf("%d %d\n", other.Process.Pid, processStart(t, other.Process.Pid)))
	if pid, ok := lifecycle.Running(dir, testName); !ok || pid != other.Process.Pid {
		t.Errorf("Running = %d, %v with an older warren's pid file, want %d", pid, ok, other.Process.Pid)
	}
	if _, err := lifecycle.Up(t.Context(), cfg, newFakes(-1).options(dir)); err == nil || !strings.Contains(err.Error(), "already up") {
		t.Fatalf("Up = %v with an older warren running, want already up", err)
	}
	if err := os.Remove(legacyPID); err != nil {
		t.Fatal(err)
	}
	writeFile(t, legacyJournal, "{") // malformed: nothing to restore, removed all the same
	tun, err := lifecycle.Up(t.Context(), cfg, newFakes(-1).options(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(legacyJournal); err == nil {
		t.Error("an older warren's journal was left")
	}
}
