// Package vmlabtest gives tests the guests of package vmlab: it skips a test
// that cannot boot one and, under CI=true, fails it instead.
package vmlabtest

import (
	"os"
	"testing"

	"github.com/warrenvpn/warren/internal/vmlab"
)

// Require skips t unless a guest can boot here (root, qemu, a kernel with
// its modules, the go command). Under CI=true it fails t instead, because
// CI installs all of them and a skip would hide a gap.
func Require(t testing.TB) {
	t.Helper()
	if err := vmlab.Probe(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("guest test cannot run under CI=true: %v", err)
		}
		t.Skipf("skipping guest test: %v", err)
	}
}
