package netlab

import (
	"os"
	"testing"
)

// RequireRoot skips t unless the process can create network namespaces
// (root, or CAP_SYS_ADMIN and CAP_NET_ADMIN, on Linux). Under CI=true it
// fails t instead, because CI runs as root and a skip would hide a gap.
func RequireRoot(t testing.TB) {
	t.Helper()
	if err := canCreateNamespaces(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("root test cannot run under CI=true: %v", err)
		}
		t.Skipf("skipping root test: %v", err)
	}
}

// NewTestLab is NewLab for tests: it calls RequireRoot and closes the lab in
// t.Cleanup.
func NewTestLab(t testing.TB, mtu int) *Lab {
	t.Helper()
	return newForTest(t, "lab", func(prefix string) (*Lab, error) { return NewLab(prefix, mtu) })
}

// NewTestNamespace is NewNamespace for tests: it calls RequireRoot and closes
// the namespace in t.Cleanup.
func NewTestNamespace(t testing.TB) *Namespace {
	t.Helper()
	return newForTest(t, "namespace", NewNamespace)
}

// newForTest creates a lab object named after t and closes it in t.Cleanup.
func newForTest[T interface{ Close() error }](t testing.TB, what string, create func(prefix string) (T, error)) T {
	t.Helper()
	RequireRoot(t)
	v, err := create(shortName(t))
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

// shortName derives a namespace prefix from the test name.
func shortName(t testing.TB) string {
	b := []byte("t")
	for _, c := range []byte(t.Name()) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b = append(b, c)
		}
		if len(b) == 24 {
			break
		}
	}
	return string(b)
}
