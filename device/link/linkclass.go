package link

// Decoding of a Windows network adapter's Characteristics, used only by
// link_windows.go. It is portable so that plain `go test` on any OS covers it.

import (
	"fmt"
	"strings"
)

// characteristics is the Characteristics value of a Windows network
// adapter's class key (HKLM\SYSTEM\CurrentControlSet\Control\Class\
// {4d36e972-e325-11ce-bfc1-08002be10318}\NNNN): the NCF_* flags the driver's
// INF declares (Microsoft: "INF DDInstall Section", Characteristics).
type characteristics uint32

// NCF_* flags of characteristics.
const (
	ncfVirtual                   characteristics = 0x1   // NCF_VIRTUAL
	ncfSoftwareEnumerated        characteristics = 0x2   // NCF_SOFTWARE_ENUMERATED
	ncfPhysical                  characteristics = 0x4   // NCF_PHYSICAL
	ncfHidden                    characteristics = 0x8   // NCF_HIDDEN
	ncfNoService                 characteristics = 0x10  // NCF_NO_SERVICE
	ncfNotUserRemovable          characteristics = 0x20  // NCF_NOT_USER_REMOVABLE
	ncfMultiportInstancedAdapter characteristics = 0x40  // NCF_MULTIPORT_INSTANCED_ADAPTER
	ncfHasUI                     characteristics = 0x80  // NCF_HAS_UI
	ncfFilter                    characteristics = 0x400 // NCF_FILTER
)

var ncfNames = []struct {
	flag characteristics
	name string
}{
	{ncfVirtual, "NCF_VIRTUAL"},
	{ncfSoftwareEnumerated, "NCF_SOFTWARE_ENUMERATED"},
	{ncfPhysical, "NCF_PHYSICAL"},
	{ncfHidden, "NCF_HIDDEN"},
	{ncfNoService, "NCF_NO_SERVICE"},
	{ncfNotUserRemovable, "NCF_NOT_USER_REMOVABLE"},
	{ncfMultiportInstancedAdapter, "NCF_MULTIPORT_INSTANCED_ADAPTER"},
	{ncfHasUI, "NCF_HAS_UI"},
	{ncfFilter, "NCF_FILTER"},
}

// String returns the flags joined by "|", with any unknown bits in hex
// (e.g. "NCF_PHYSICAL|NCF_HAS_UI", "NCF_VIRTUAL|0x100"), or "0".
func (c characteristics) String() string {
	if c == 0 {
		return "0"
	}
	var parts []string
	rest := c
	for _, n := range ncfNames {
		if c&n.flag != 0 {
			parts = append(parts, n.name)
			rest &^= n.flag
		}
	}
	if rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(rest)))
	}
	return strings.Join(parts, "|")
}

// classify reports whether an adapter with these characteristics is
// virtual, and why. An adapter is physical only when NCF_PHYSICAL is set and
// neither NCF_VIRTUAL nor NCF_SOFTWARE_ENUMERATED is; without any of the
// three flags it counts as virtual, since hardware drivers declare
// NCF_PHYSICAL.
func (c characteristics) classify() (virtual bool, why string) {
	desc := fmt.Sprintf("Characteristics %#x (%s)", uint32(c), c)
	switch {
	case c&ncfVirtual != 0:
		return true, "NCF_VIRTUAL set: " + desc
	case c&ncfSoftwareEnumerated != 0:
		return true, "NCF_SOFTWARE_ENUMERATED set: " + desc
	case c&ncfPhysical != 0:
		return false, "NCF_PHYSICAL set: " + desc
	}
	return true, "NCF_PHYSICAL not set: " + desc
}
