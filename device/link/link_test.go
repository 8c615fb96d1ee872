package link

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLinkSpecValidate(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		wantErr string // substring; "" means valid
		want    *Spec  // after defaults, when valid
	}{
		{name: "macvlan default mode", spec: Spec{Kind: "macvlan", Name: "m0", Parent: "eth0"},
			want: &Spec{Kind: "macvlan", Name: "m0", Parent: "eth0", Mode: "bridge"}},
		{name: "macvtap vepa", spec: Spec{Kind: "macvtap", Name: "t0", Parent: "eth0", Mode: "vepa"}},
		{name: "macvlan no parent", spec: Spec{Kind: "macvlan", Name: "m0"}, wantErr: "--parent missing"},
		{name: "macvlan bad mode", spec: Spec{Kind: "macvlan", Name: "m0", Parent: "eth0", Mode: "l2"},
			wantErr: `unknown mode "l2"`},
		{name: "ipvlan default mode", spec: Spec{Kind: "ipvlan", Name: "i0", Parent: "eth0"},
			want: &Spec{Kind: "ipvlan", Name: "i0", Parent: "eth0", Mode: "l2"}},
		{name: "ipvlan bad mode", spec: Spec{Kind: "ipvlan", Name: "i0", Parent: "eth0", Mode: "vepa"},
			wantErr: `unknown mode "vepa"`},
		{name: "veth", spec: Spec{Kind: "veth", Name: "v0", Peer: "v1"}},
		{name: "veth no peer", spec: Spec{Kind: "veth", Name: "v0"}, wantErr: "--peer missing"},
		{name: "veth same name same ns", spec: Spec{Kind: "veth", Name: "v0", Peer: "v0"},
			wantErr: "another name or namespace"},
		{name: "veth same name other ns", spec: Spec{Kind: "veth", Name: "v0", Peer: "v0", PeerNetns: "b"}},
		{name: "peer on bridge", spec: Spec{Kind: "bridge", Name: "br0", Peer: "x"}, wantErr: "veth only"},
		{name: "peer address on ifb", spec: Spec{Kind: "ifb", Name: "ifb9",
			PeerAddress: netip.MustParsePrefix("198.18.0.1/24")}, wantErr: "veth only"},
		{name: "vxlan default port", spec: Spec{Kind: "vxlan", Name: "vx0", VNI: 42},
			want: &Spec{Kind: "vxlan", Name: "vx0", VNI: 42, Port: 4789}},
		{name: "vxlan vni too big", spec: Spec{Kind: "vxlan", Name: "vx0", VNI: 1 << 24}, wantErr: "out of range"},
		{name: "tun", spec: Spec{Kind: "tun", Name: "tun0", Owner: 1000, MultiQueue: true}},
		{name: "dummy", spec: Spec{Kind: "dummy", Name: "d0"}},
		{name: "unknown kind", spec: Spec{Kind: "wireguard", Name: "wg0"}, wantErr: `unknown link kind "wireguard"`},
		{name: "no name", spec: Spec{Kind: "bridge"}, wantErr: "name missing"},
		{name: "long name", spec: Spec{Kind: "bridge", Name: "abcdefghijklmnop"}, wantErr: "invalid link name"},
		{name: "slash in name", spec: Spec{Kind: "bridge", Name: "a/b"}, wantErr: "invalid link name"},
		{name: "colon in name", spec: Spec{Kind: "bridge", Name: "eth0:1"}, wantErr: "invalid link name"},
		{name: "template name", spec: Spec{Kind: "bridge", Name: "br%d"}, wantErr: "invalid link name"},
		{name: "veth bad peer name", spec: Spec{Kind: "veth", Name: "v0", Peer: "v 1"}, wantErr: "invalid peer name"},
		{name: "parent netns without parent", spec: Spec{Kind: "bridge", Name: "br0", ParentNetns: "x"},
			wantErr: "without a parent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			err := spec.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate() = %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if tc.want != nil {
				if diff := cmp.Diff(spec, *tc.want, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
					t.Errorf("spec after Validate (-got +want):\n%s", diff)
				}
			}
		})
	}
}

func TestClassifySysfs(t *testing.T) {
	tests := []struct {
		name, resolved, subsystem, bus string
		want                           sysfsClass
	}{
		{name: "eth0", resolved: "/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0", subsystem: "virtio", bus: "virtio2",
			want: sysfsClass{found: true, why: "virtio bus device virtio2 behind /sys/class/net/eth0/device"}},
		{name: "enp1s0", resolved: "/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0/net/enp1s0", subsystem: "pci", bus: "0000:01:00.0",
			want: sysfsClass{found: true, why: "pci bus device 0000:01:00.0 behind /sys/class/net/enp1s0/device"}},
		{name: "usb0", resolved: "/sys/devices/usb/net/usb0", bus: "1-1:1.0",
			want: sysfsClass{found: true, why: "bus device 1-1:1.0 behind /sys/class/net/usb0/device"}},
		{name: "veth0", resolved: "/sys/devices/virtual/net/veth0",
			want: sysfsClass{found: true, virtual: true, why: "no bus device; lives under /sys/devices/virtual/net"}},
		{name: "odd", resolved: "/sys/devices/platform/odd/net/odd",
			want: sysfsClass{found: true, why: "not under /sys/devices/virtual/net: /sys/devices/platform/odd/net/odd"}},
		{name: "gone", want: sysfsClass{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := classifySysfs(tc.name, tc.resolved, tc.subsystem, tc.bus)
			if got != tc.want {
				t.Errorf("classifySysfs(%q, %q, %q, %q) = %+v, want %+v", tc.name, tc.resolved, tc.subsystem, tc.bus, got, tc.want)
			}
		})
	}
}

func TestClassifyByKind(t *testing.T) {
	tests := []struct {
		kind    string
		virtual bool
	}{
		{"device", false}, {"loopback", true}, {"veth", true}, {"tun", true}, {"bridge", true},
	}
	for _, tc := range tests {
		if virtual, why := classifyByKind(tc.kind); virtual != tc.virtual || why == "" {
			t.Errorf("classifyByKind(%q) = %v, %q, want %v and a reason", tc.kind, virtual, why, tc.virtual)
		}
	}
}

func TestIsLocallyAdministered(t *testing.T) {
	tests := []struct {
		mac  string
		want bool
	}{
		{"02:fc:00:00:00:01", true},
		{"52:54:00:12:34:56", true},
		{"00:1b:21:3a:4f:10", false},
		{"fe:ff:ff:ff:ff:ff", true},
		{"01:00:5e:00:00:01", false},
		{"", false},
	}
	for _, tc := range tests {
		var mac net.HardwareAddr
		if tc.mac != "" {
			mac, _ = net.ParseMAC(tc.mac)
		}
		if got := isLocallyAdministered(mac); got != tc.want {
			t.Errorf("isLocallyAdministered(%s) = %v, want %v", tc.mac, got, tc.want)
		}
	}
}

func TestParseDevNum(t *testing.T) {
	tests := []struct {
		in           string
		major, minor uint32
		ok           bool
	}{
		{"246:1", 246, 1, true},
		{"10:200", 10, 200, true},
		{"246", 0, 0, false},
		{"a:1", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range tests {
		major, minor, ok := parseDevNum(tc.in)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("parseDevNum(%q) = %d, %d, %v, want %d, %d, %v", tc.in, major, minor, ok, tc.major, tc.minor, tc.ok)
		}
	}
}

func TestKernelOption(t *testing.T) {
	for kind, want := range map[string]string{"ipvlan": "CONFIG_IPVLAN", "dummy": "CONFIG_DUMMY", "tap": "CONFIG_TUN", "nope": ""} {
		if got := kernelOption(kind); got != want {
			t.Errorf("kernelOption(%q) = %q, want %q", kind, got, want)
		}
	}
}
