package tunnel

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDeps checks that the engine links no host-side code: the Adapter and
// Transport interfaces live here so that netlink, netns, wireguard-go and
// the adapters of package device (the TUN and the TAP, which open
// /dev/net/tun themselves) stay out of package tunnel (its tests may use
// them).
func TestDeps(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("go command not found under CI: %v", err)
		}
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	forbidden := []string{
		"github.com/vishvananda/netlink",
		"github.com/vishvananda/netns",
		"golang.zx2c4.com/wireguard",
		"github.com/warrenvpn/warren/device",
	}
	pkgs := strings.Fields(string(out))
	if !slices.Contains(pkgs, "github.com/warrenvpn/warren/tunnel") {
		t.Fatalf("go list -deps . lists no package tunnel:\n%s", out)
	}
	for _, pkg := range pkgs {
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") {
				t.Errorf("package tunnel depends on %s", pkg)
			}
		}
	}
}
