// Package netlabtest gives tests the namespace labs of package netlab: it
// skips a test that cannot create namespaces and closes what it created in
// t.Cleanup. It lives apart from netlab so that the demo and the benchmarks,
// which use netlab, do not link package testing into the binary.
package netlabtest

import (
	"os"
	"testing"

	"github.com/warrenvpn/warren/internal/netlab"
)

// RequireRoot skips t unless the process can create network namespaces
// (root, or CAP_SYS_ADMIN and CAP_NET_ADMIN, on Linux). Under CI=true it
// fails t instead, because CI runs as root and a skip would hide a gap.
func RequireRoot(t testing.TB) {
	t.Helper()
	if err := netlab.Probe(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("root test cannot run under CI=true: %v", err)
		}
		t.Skipf("skipping root test: %v", err)
	}
}

// NewLab is netlab.NewLab for tests: it calls RequireRoot, names the lab's
// namespaces after t and closes the lab in t.Cleanup.
func NewLab(t testing.TB, mtu int) *netlab.Lab {
	t.Helper()
	return create(t, "lab", func(prefix string) (*netlab.Lab, error) { return netlab.NewLab(prefix, mtu) })
}

// NewNamespace is netlab.NewNamespace for tests: it calls RequireRoot, names
// the namespace after t and closes it in t.Cleanup.
func NewNamespace(t testing.TB) *netlab.Namespace {
	t.Helper()
	return create(t, "namespace", netlab.NewNamespace)
}

// create makes a lab object named after t and closes it in t.Cleanup.
func create[T interface{ Close() error }](t testing.TB, what string, open func(prefix string) (T, error)) T {
	t.Helper()
	RequireRoot(t)
	v, err := open(prefix(t))
	if err != nil {
		t.Fatalf("create %s: %v", what, err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil {
			t.Errorf("close %s: %v", what, err)
		}
	})
	return v
}

// prefix derives a namespace name prefix from t's name: "t" followed by its
// letters and digits, at most 24 bytes in all.
func prefix(t testing.TB) string {
	b := []byte("t")
	for _, c := range []byte(t.Name()) {
		if len(b) == 24 {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b = append(b, c)
		}
	}
	return string(b)
}
