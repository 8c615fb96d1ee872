package link

import (
	"fmt"
	"strings"
)

// AdapterCharacteristics is the Characteristics value of a Windows network
// adapter's class key (HKLM\SYSTEM\CurrentControlSet\Control\Class\
// {4d36e972-e325-11ce-bfc1-08002be10318}\NNNN): the NCF_* flags the driver's
// INF declares (Microsoft: "INF DDInstall Section", Characteristics).
type AdapterCharacteristics uint32

// NCF_* flags of AdapterCharacteristics.
const (
	NCFVirtual                   AdapterCharacteristics = 0x1   // NCF_VIRTUAL
	NCFSoftwareEnumerated        AdapterCharacteristics = 0x2   // NCF_SOFTWARE_ENUMERATED
	NCFPhysical                  AdapterCharacteristics = 0x4   // NCF_PHYSICAL
	NCFHidden                    AdapterCharacteristics = 0x8   // NCF_HIDDEN
	NCFNoService                 AdapterCharacteristics = 0x10  // NCF_NO_SERVICE
	NCFNotUserRemovable          AdapterCharacteristics = 0x20  // NCF_NOT_USER_REMOVABLE
	NCFMultiportInstancedAdapter AdapterCharacteristics = 0x40  // NCF_MULTIPORT_INSTANCED_ADAPTER
	NCFHasUI                     AdapterCharacteristics = 0x80  // NCF_HAS_UI
	NCFFilter                    AdapterCharacteristics = 0x400 // NCF_FILTER
)

var ncfNames = []struct {
	flag AdapterCharacteristics
	name string
}{
	{NCFVirtual, "NCF_VIRTUAL"},
	{NCFSoftwareEnumerated, "NCF_SOFTWARE_ENUMERATED"},
	{NCFPhysical, "NCF_PHYSICAL"},
	{NCFHidden, "NCF_HIDDEN"},
	{NCFNoService, "NCF_NO_SERVICE"},
	{NCFNotUserRemovable, "NCF_NOT_USER_REMOVABLE"},
	{NCFMultiportInstancedAdapter, "NCF_MULTIPORT_INSTANCED_ADAPTER"},
	{NCFHasUI, "NCF_HAS_UI"},
	{NCFFilter, "NCF_FILTER"},
}

// String returns the flags joined by "|", with any unknown bits in hex
// (e.g. "NCF_PHYSICAL|NCF_HAS_UI", "NCF_VIRTUAL|0x100"), or "0".
func (c AdapterCharacteristics) String() string {
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

// Classify reports whether an adapter with these characteristics is
// virtual, and why. An adapter is physical only when NCF_PHYSICAL is set and
// neither NCF_VIRTUAL nor NCF_SOFTWARE_ENUMERATED is; without any of the
// three flags it counts as virtual, since hardware drivers declare
// NCF_PHYSICAL.
func (c AdapterCharacteristics) Classify() (virtual bool, why string) {
	desc := fmt.Sprintf("Characteristics %#x (%s)", uint32(c), c)
	switch {
	case c&NCFVirtual != 0:
		return true, "NCF_VIRTUAL set: " + desc
	case c&NCFSoftwareEnumerated != 0:
		return true, "NCF_SOFTWARE_ENUMERATED set: " + desc
	case c&NCFPhysical != 0:
		return false, "NCF_PHYSICAL set: " + desc
	}
	return true, "NCF_PHYSICAL not set: " + desc
}
