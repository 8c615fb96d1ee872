package link

// The virtual link toolkit (`warren link`): list and classify a host's
// network interfaces, and add or delete the virtual links warren fans tunnels
// out with (macvlan, macvtap, veth, ifb, bridge, tun/tap). The portable types
// and rules live here; the netlink calls live in link_linux.go and the
// Windows registry read in link_windows.go.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/warrenvpn/warren/config"
)

// Errors returned by Add and Delete, wrapped with the link and kind
// they concern. Callers branch on them with errors.Is.
var (
	// ErrExists reports that the requested name is already in use.
	ErrExists = errors.New("name already in use")
	// ErrNotFound reports a missing link: the one to delete, a parent,
	// a bridge port or a redirect source.
	ErrNotFound = errors.New("no such link")
	// ErrNetnsNotFound reports a network namespace name with no entry under
	// /run/netns.
	ErrNetnsNotFound = errors.New("no such network namespace")
	// ErrKindUnsupported reports a link kind the running kernel was built
	// without.
	ErrKindUnsupported = errors.New("link kind not supported by this kernel")
	// ErrNotPermitted reports missing privileges (EPERM or EACCES).
	ErrNotPermitted = errors.New("operation not permitted: root or CAP_NET_ADMIN needed")
)

// Info describes one network interface as `warren link ls` shows it.
// Fields that do not apply to a link's kind hold their zero value.
type Info struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// Netns names the link's network namespace: its name under /run/netns,
	// "" for the namespace warren runs in when that one has no name, or
	// "pid:N" for an unnamed namespace that process N lives in.
	Netns string `json:"netns"`
	// Kind is the rtnetlink kind (veth, macvlan, bridge, ...), "tun" or
	// "tap" for TUN/TAP devices, "loopback", or "device" for a link without
	// a kind (usually a physical NIC).
	Kind string `json:"kind"`
	// Virtual reports whether the link is software only; Why says what the
	// answer rests on.
	Virtual bool   `json:"virtual"`
	Why     string `json:"why"`
	MAC     string `json:"mac"`
	// LocallyAdministered reports whether the MAC has the locally
	// administered bit (0x02 of the first octet) set.
	LocallyAdministered bool `json:"locally_administered"`
	MTU                 int  `json:"mtu"`
	// State is the operational state (up, down, lower-layer-down,
	// unknown, ...), "down" whenever the link is administratively down.
	State string `json:"state"`
	// Up reports whether the link is administratively up (IFF_UP); the
	// operational state follows asynchronously.
	Up bool `json:"up"`
	// Master is the name of the bridge (or other master) the link is
	// enslaved to.
	Master string `json:"master"`
	// Parent is the lower device of a macvlan, macvtap, ipvlan or vxlan,
	// written NAME@NETNS when it lives in another namespace.
	Parent string `json:"parent"`
	// Mode is the macvlan/macvtap/ipvlan mode.
	Mode string `json:"mode"`
	// Peer is the other end of a veth, nil for every other kind.
	Peer *Peer `json:"peer"`

	// TapDevice is a macvtap's character device, e.g. /dev/tap7.
	TapDevice string `json:"tap_device,omitempty"`
	// TUN describes a TUN or TAP device.
	TUN *TUNInfo `json:"tun,omitempty"`
	// Hairpin is set on bridge ports: whether the port reflects frames
	// back where they came from (the reflective relay a VEPA needs).
	Hairpin *bool `json:"hairpin,omitempty"`
	// VXLAN describes a vxlan link.
	VXLAN *VXLANInfo `json:"vxlan,omitempty"`
}

// Peer identifies a veth's other end, possibly in another namespace.
type Peer struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	Netns string `json:"netns"`
}

// TUNInfo describes a TUN or TAP device.
type TUNInfo struct {
	Type       string `json:"type"` // "tun" or "tap"
	MultiQueue bool   `json:"multi_queue"`
	// Owner is the owning user ID; 0 (root) also when none is set.
	Owner      int  `json:"owner"`
	Persistent bool `json:"persistent"`
	Queues     int  `json:"queues"`
}

// VXLANInfo describes a vxlan link.
type VXLANInfo struct {
	VNI  int `json:"vni"`
	Port int `json:"port"` // UDP destination port
}

// ListOptions selects the namespaces List looks at.
type ListOptions struct {
	// Netns lists the named namespace instead of the current one.
	Netns string
	// AllNamespaces lists the current namespace, every namespace named
	// under /run/netns and every unnamed one a process lives in.
	AllNamespaces bool
}

// Spec describes a link for Add. Kind and Name are required; the
// other fields apply to the kinds their comments name.
type Spec struct {
	// Kind is macvlan, macvtap, ipvlan, veth, ifb, bridge, vxlan, tun, tap,
	// or dummy.
	Kind string
	Name string
	// Netns places the new link in this named namespace ("" is the current
	// one). Ports and RedirectFrom are looked up there too.
	Netns string
	// Address is assigned to the new link when valid.
	Address netip.Prefix

	// Parent is the lower device (macvlan, macvtap, ipvlan, vxlan), looked
	// up in ParentNetns ("" is the current namespace).
	Parent      string
	ParentNetns string
	// Mode is the macvlan/macvtap mode (bridge, vepa, private, passthru,
	// source; default bridge) or the ipvlan mode (l2, l3, l3s; default l2).
	Mode string

	// Peer, PeerNetns and PeerAddress describe a veth's other end.
	Peer        string
	PeerNetns   string
	PeerAddress netip.Prefix

	// RedirectFrom (ifb) names a device whose ingress traffic is redirected
	// to the new IFB through an ingress qdisc and a mirred action.
	RedirectFrom string

	// Ports (bridge) are enslaved to the new bridge; Hairpin turns hairpin
	// mode on for each of them.
	Ports   []string
	Hairpin bool

	// Owner (tun, tap) is the owning user ID; 0 leaves the device to root.
	Owner int
	// MultiQueue (tun, tap) creates a multi-queue device.
	MultiQueue bool

	// VNI and Port (vxlan) are the VXLAN network identifier and UDP port
	// (default 4789).
	VNI  int
	Port int
}

// macvlanModes lists the macvlan and macvtap modes Add accepts, in the
// kernel's order.
var macvlanModes = []string{"private", "vepa", "bridge", "passthru", "source"}

// ipvlanModes lists the ipvlan modes Add accepts, in the kernel's order.
var ipvlanModes = []string{"l2", "l3", "l3s"}

// kernelOptions maps a link kind to the kernel option that provides it, for
// the error that names what a kernel lacks.
var kernelOptions = map[string]string{
	"macvlan": "CONFIG_MACVLAN",
	"macvtap": "CONFIG_MACVTAP",
	"ipvlan":  "CONFIG_IPVLAN",
	"ipvtap":  "CONFIG_IPVTAP",
	"veth":    "CONFIG_VETH",
	"ifb":     "CONFIG_IFB",
	"bridge":  "CONFIG_BRIDGE",
	"vxlan":   "CONFIG_VXLAN",
	"tun":     "CONFIG_TUN",
	"tap":     "CONFIG_TUN",
	"dummy":   "CONFIG_DUMMY",
	"ingress": "CONFIG_NET_SCH_INGRESS",
	"u32":     "CONFIG_NET_CLS_U32",
	"mirred":  "CONFIG_NET_ACT_MIRRED",
}

// kernelOption returns the kernel configuration option that provides links
// of the given kind, or "" if it is not known.
func kernelOption(kind string) string { return kernelOptions[kind] }

// Validate checks a Spec for mistakes that need no system call and
// fills in defaults (macvlan mode bridge, ipvlan mode l2, vxlan port 4789).
func (s *Spec) Validate() error {
	if s.Name == "" {
		return errors.New("link name missing")
	}
	if !config.ValidName(s.Name) {
		return fmt.Errorf("invalid link name %q: want %s", s.Name, config.NameRule)
	}
	switch s.Kind {
	case "macvlan", "macvtap":
		if s.Parent == "" {
			return fmt.Errorf("%s %s: --parent missing", s.Kind, s.Name)
		}
		if s.Mode == "" {
			s.Mode = "bridge"
		}
		if !slices.Contains(macvlanModes, s.Mode) {
			return fmt.Errorf("%s %s: unknown mode %q (want %s)", s.Kind, s.Name, s.Mode, strings.Join(macvlanModes, ", "))
		}
	case "ipvlan":
		if s.Parent == "" {
			return fmt.Errorf("ipvlan %s: --parent missing", s.Name)
		}
		if s.Mode == "" {
			s.Mode = "l2"
		}
		if !slices.Contains(ipvlanModes, s.Mode) {
			return fmt.Errorf("ipvlan %s: unknown mode %q (want %s)", s.Name, s.Mode, strings.Join(ipvlanModes, ", "))
		}
	case "veth":
		if s.Peer == "" {
			return fmt.Errorf("veth %s: --peer missing", s.Name)
		}
		if !config.ValidName(s.Peer) {
			return fmt.Errorf("veth %s: invalid peer name %q: want %s", s.Name, s.Peer, config.NameRule)
		}
		if s.Peer == s.Name && s.PeerNetns == s.Netns {
			return fmt.Errorf("veth %s: peer needs another name or namespace", s.Name)
		}
	case "vxlan":
		if s.VNI < 0 || s.VNI >= 1<<24 {
			return fmt.Errorf("vxlan %s: VNI %d out of range 0-16777215", s.Name, s.VNI)
		}
		if s.Port == 0 {
			s.Port = 4789
		}
		if s.Port < 0 || s.Port > 65535 {
			return fmt.Errorf("vxlan %s: port %d out of range", s.Name, s.Port)
		}
	case "ifb", "bridge", "tun", "tap", "dummy":
	default:
		return fmt.Errorf("unknown link kind %q", s.Kind)
	}
	if s.ParentNetns != "" && s.Parent == "" {
		return fmt.Errorf("%s %s: parent namespace without a parent", s.Kind, s.Name)
	}
	if s.Kind != "veth" && (s.Peer != "" || s.PeerNetns != "" || s.PeerAddress.IsValid()) {
		return fmt.Errorf("%s %s: peer options apply to veth only", s.Kind, s.Name)
	}
	return nil
}

// parseDevNum parses sysfs's "major:minor".
func parseDevNum(s string) (major, minor uint32, ok bool) {
	a, b, found := strings.Cut(s, ":")
	ma, err1 := strconv.ParseUint(a, 10, 32)
	mi, err2 := strconv.ParseUint(b, 10, 32)
	if !found || err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint32(ma), uint32(mi), true
}

// isLocallyAdministered reports whether a MAC address has the locally
// administered bit set (IEEE 802: bit 1 of the first octet).
func isLocallyAdministered(mac net.HardwareAddr) bool {
	return len(mac) > 0 && mac[0]&0x02 != 0
}

// sysfsClass is what sysfs says about one link: whether a bus device backs
// it, and a macvtap's character device.
type sysfsClass struct {
	found     bool   // the link appeared in sysfs
	virtual   bool   // resolved under /sys/devices/virtual/net
	why       string // the evidence, for Info.Why
	tapDevice string // macvtap: "tapN"
	tapDevNum string // macvtap: "major:minor" from .../macvtap/tapN/dev
}

// classifySysfs classifies a link from its resolved /sys/class/net/NAME
// path (as under /sys/devices/...) and, for a physical link, its bus
// subsystem and bus device name (the base names of the device/subsystem and
// device symlinks). An empty path means the link was not in sysfs.
func classifySysfs(name, resolved, subsystem, busDevice string) sysfsClass {
	switch {
	case resolved == "":
		return sysfsClass{}
	case strings.Contains(resolved, "/devices/virtual/net/"):
		return sysfsClass{found: true, virtual: true,
			why: "no bus device; lives under /sys/devices/virtual/net"}
	case busDevice != "":
		why := fmt.Sprintf("bus device %s", busDevice)
		if subsystem != "" {
			why = fmt.Sprintf("%s bus device %s", subsystem, busDevice)
		}
		return sysfsClass{found: true, why: why + " behind /sys/class/net/" + name + "/device"}
	default:
		return sysfsClass{found: true, why: "not under /sys/devices/virtual/net: " + resolved}
	}
}

// classifyByKind is the fallback when sysfs cannot be read: a link with an
// rtnetlink kind, or the loopback, is software; one without a kind is taken
// as hardware.
func classifyByKind(kind string) (virtual bool, why string) {
	switch kind {
	case "device":
		return false, "no link kind (sysfs not readable)"
	case "loopback":
		return true, "loopback (sysfs not readable)"
	}
	return true, fmt.Sprintf("software link kind %s (sysfs not readable)", kind)
}
