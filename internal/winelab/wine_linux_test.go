package winelab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
	"github.com/warrenvpn/warren/internal/winelab"
)

// adapterClassKey is the network adapter class key link_windows.go reads.
const adapterClassKey = `HKLM\SYSTEM\CurrentControlSet\Control\Class\{4d36e972-e325-11ce-bfc1-08002be10318}`

// buildWindows builds pkg for Windows into dir: a command, or with test
// set, the package's test binary.
func buildWindows(t *testing.T, dir, pkg string, test bool) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg)+".exe")
	args := []string{"build", "-o", out, pkg}
	if test {
		out = filepath.Join(dir, filepath.Base(pkg)+".test.exe")
		args = []string{"test", "-c", "-o", out, pkg}
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("GOOS=windows go %v: %v\n%s", args, err, b)
	}
	return out
}

// TestWindowsLinkUnderWine runs the Windows build of device/link for real:
// its test binary, and `warren link ls --json` after adapter class keys with
// several Characteristics were written into Wine's registry, one per link of
// a namespace the test owns. Each adapter must be classified as written,
// with the JSON fields of the Linux build. Wine lists the namespace's Linux
// links as adapters; it cannot show what real NIC drivers write (their INF
// files' Characteristics, NDIS media types, hidden filter adapters), so the
// keys are ours.
func TestWindowsLinkUnderWine(t *testing.T) {
	if _, err := winelab.FindWine(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: a missing tool is a failure)", err)
		}
		t.Skip(err)
	}
	ns := netlabtest.NewNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The namespace's links, besides lo: two veth pairs.
	for _, pair := range [][2]string{{"wphys", "wvirt"}, {"wswenum", "whidden"}} {
		if err := ns.Handle().LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pair[0]}, PeerName: pair[1]}); err != nil {
			t.Fatalf("add veth %v: %v", pair, err)
		}
	}
	dir := t.TempDir()
	built := time.Now()
	warren := buildWindows(t, dir, "github.com/warrenvpn/warren/cmd/warren", false)
	ids := buildWindows(t, dir, "github.com/warrenvpn/warren/internal/winelab/adapterids", false)
	linkTest := buildWindows(t, dir, "github.com/warrenvpn/warren/device/link", true)

	t.Logf("Windows builds took %v", time.Since(built).Round(time.Millisecond))
	start := time.Now()
	prefix, err := winelab.NewPrefix(ctx, filepath.Join(dir, "prefix"), ns.Command)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prefix.Close() })
	t.Logf("Wine prefix ready in %v", time.Since(start).Round(time.Millisecond))
	run := func(program string, args ...string) string {
		t.Helper()
		out, err := prefix.Run(ctx, program, args...)
		if err != nil {
			t.Fatalf("wine %s %v: %v\n%s", filepath.Base(program), args, err, out)
		}
		return string(out)
	}

	// The Windows test binary of device/link.
	testStart := time.Now()
	if out := run(linkTest, "-test.v", "-test.count=1"); !strings.Contains(out, "\nPASS") {
		t.Errorf("device/link tests under Wine did not pass:\n%s", out)
	}

	t.Logf("device/link tests under Wine took %v", time.Since(testStart).Round(time.Millisecond))

	// The GUID Wine gives each link: its NetCfgInstanceId.
	guids := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(ids)), "\n") {
		f := strings.Fields(strings.TrimSpace(line))
		if len(f) == 3 {
			guids[f[2]] = f[1]
		}
	}
	tests := []struct {
		name            string
		characteristics uint32 // 0: no class key entry
		virtual         bool
		why             string
	}{
		{"wphys", 0x84, false, "NCF_PHYSICAL set: Characteristics 0x84 (NCF_PHYSICAL|NCF_HAS_UI)"},
		{"wvirt", 0x1, true, "NCF_VIRTUAL set: Characteristics 0x1 (NCF_VIRTUAL)"},
		{"wswenum", 0x6, true, "NCF_SOFTWARE_ENUMERATED set: Characteristics 0x6 (NCF_SOFTWARE_ENUMERATED|NCF_PHYSICAL)"},
		{"whidden", 0x8, true, "NCF_PHYSICAL not set: Characteristics 0x8 (NCF_HIDDEN)"},
		{"lo", 0, true, "no adapter class key entry"},
	}
	// One .reg file, imported at once: each Wine start costs seconds. Two
	// keys the reader must pass over: one for an adapter that is gone, and
	// Properties, which has no values.
	var reg strings.Builder
	key := strings.Replace(adapterClassKey, "HKLM", "HKEY_LOCAL_MACHINE", 1)
	fmt.Fprintf(&reg, "REGEDIT4\r\n\r\n[%s]\r\n\r\n[%s\\Properties]\r\n\r\n", key, key)
	fmt.Fprintf(&reg, "[%s\\0000]\r\n\"NetCfgInstanceId\"=\"{DEADBEEF-0000-0000-0000-000000000000}\"\r\n\"Characteristics\"=dword:00000004\r\n\r\n", key)
	for i, tc := range tests {
		if tc.characteristics == 0 {
			continue
		}
		guid, ok := guids[tc.name]
		if !ok {
			t.Fatalf("Wine lists no adapter %s; it lists %v", tc.name, guids)
		}
		fmt.Fprintf(&reg, "[%s\\%04d]\r\n\"NetCfgInstanceId\"=\"%s\"\r\n\"Characteristics\"=dword:%08x\r\n\r\n", key, i+1, guid, tc.characteristics)
	}
	regFile := filepath.Join(dir, "adapters.reg")
	if err := os.WriteFile(regFile, []byte(reg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run("regedit", "/S", regFile)

	out := run(warren, "link", "ls", "--json")
	var got []map[string]any
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &got); err != nil {
		t.Fatalf("warren link ls --json under Wine: %v\n%s", err, out)
	}
	byName := map[string]map[string]any{}
	for _, a := range got {
		byName[fmt.Sprint(a["name"])] = a
	}
	for _, tc := range tests {
		a, ok := byName[tc.name]
		if !ok {
			t.Errorf("warren link ls under Wine lacks %s:\n%s", tc.name, out)
			continue
		}
		if a["virtual"] != tc.virtual || a["why"] != tc.why {
			t.Errorf("%s: virtual %v, why %q; want %v, %q", tc.name, a["virtual"], a["why"], tc.virtual, tc.why)
		}
	}

	// The same JSON fields as the Linux build prints.
	linuxStart := time.Now()
	linuxWarren := filepath.Join(dir, "warren")
	if b, err := exec.Command("go", "build", "-o", linuxWarren, "github.com/warrenvpn/warren/cmd/warren").CombinedOutput(); err != nil {
		t.Fatalf("go build warren: %v\n%s", err, b)
	}
	linuxOut, err := ns.Command(ctx, linuxWarren, "link", "ls", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("warren link ls --json on Linux: %v\n%s", err, linuxOut)
	}
	var linux []map[string]any
	if err := json.Unmarshal(linuxOut, &linux); err != nil || len(linux) == 0 {
		t.Fatalf("warren link ls --json on Linux: %v\n%s", err, linuxOut)
	}
	t.Logf("the Linux build's link ls took %v", time.Since(linuxStart).Round(time.Millisecond))
	if diff := cmp.Diff(keys(got[0]), keys(linux[0])); diff != "" {
		t.Errorf("JSON fields of the Windows build (-windows +linux):\n%s", diff)
	}
	t.Logf("under Wine: %s", out)
}

func keys(m map[string]any) []string {
	var k []string
	for name := range m {
		k = append(k, name)
	}
	sort.Strings(k)
	return k
}
