package link

import "testing"

func TestCharacteristicsString(t *testing.T) {
	tests := []struct {
		c    characteristics
		want string
	}{
		{0, "0"},
		{ncfPhysical, "NCF_PHYSICAL"},
		{0x84, "NCF_PHYSICAL|NCF_HAS_UI"},
		{0x9, "NCF_VIRTUAL|NCF_HIDDEN"},
		{0x401, "NCF_VIRTUAL|NCF_FILTER"},
		{0x7ff, "NCF_VIRTUAL|NCF_SOFTWARE_ENUMERATED|NCF_PHYSICAL|NCF_HIDDEN|NCF_NO_SERVICE|NCF_NOT_USER_REMOVABLE|NCF_MULTIPORT_INSTANCED_ADAPTER|NCF_HAS_UI|NCF_FILTER|0x300"},
		{0x1000, "0x1000"},
	}
	for _, tc := range tests {
		if got := tc.c.String(); got != tc.want {
			t.Errorf("characteristics(%#x).String() = %q, want %q", uint32(tc.c), got, tc.want)
		}
	}
}

func TestCharacteristicsClassify(t *testing.T) {
	tests := []struct {
		name    string
		c       characteristics
		virtual bool
		why     string
	}{
		{"intel nic", 0x84, false, "NCF_PHYSICAL set: Characteristics 0x84 (NCF_PHYSICAL|NCF_HAS_UI)"},
		{"physical only", ncfPhysical, false, "NCF_PHYSICAL set: Characteristics 0x4 (NCF_PHYSICAL)"},
		{"wintun", ncfVirtual, true, "NCF_VIRTUAL set: Characteristics 0x1 (NCF_VIRTUAL)"},
		{"wan miniport", 0x29, true, "NCF_VIRTUAL set: Characteristics 0x29 (NCF_VIRTUAL|NCF_HIDDEN|NCF_NOT_USER_REMOVABLE)"},
		{"tap-windows", 0x81, true, "NCF_VIRTUAL set: Characteristics 0x81 (NCF_VIRTUAL|NCF_HAS_UI)"},
		{"software enumerated", ncfSoftwareEnumerated | ncfPhysical, true,
			"NCF_SOFTWARE_ENUMERATED set: Characteristics 0x6 (NCF_SOFTWARE_ENUMERATED|NCF_PHYSICAL)"},
		{"virtual wins over physical", ncfVirtual | ncfPhysical, true,
			"NCF_VIRTUAL set: Characteristics 0x5 (NCF_VIRTUAL|NCF_PHYSICAL)"},
		{"no class flag", ncfHidden, true, "NCF_PHYSICAL not set: Characteristics 0x8 (NCF_HIDDEN)"},
		{"zero", 0, true, "NCF_PHYSICAL not set: Characteristics 0x0 (0)"},
		{"filter", ncfFilter | ncfVirtual, true, "NCF_VIRTUAL set: Characteristics 0x401 (NCF_VIRTUAL|NCF_FILTER)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			virtual, why := tc.c.classify()
			if virtual != tc.virtual || why != tc.why {
				t.Errorf("classify(%#x) = %v, %q, want %v, %q", uint32(tc.c), virtual, why, tc.virtual, tc.why)
			}
		})
	}
}
