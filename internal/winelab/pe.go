// Package winelab runs Windows builds of warren under Wine for tests: it
// gives Wine what Go binaries need that Debian's Wine 8.0 lacks, and wraps
// the wine64 command.
//
// Go 1.22 and later call ProcessPrng in bcryptprimitives.dll at start-up;
// Wine 8.0 has no such DLL, so a Go binary dies before main ("fatal error:
// bcryptprimitives.dll not found"). ForwarderDLL builds one whose only
// export forwards ProcessPrng to advapi32's RtlGenRandom (SystemFunction036),
// which Wine has: same arguments, and a non-zero return on success.
//
// Package winelab is test tooling: only tests import it.
package winelab

import (
	"bytes"
	"encoding/binary"
	"sort"
)

// PE layout constants (Microsoft PE format specification).
const (
	fileAlign    = 0x200
	sectionAlign = 0x1000
	sectionRVA   = 0x1000 // the one section, .edata
	imageBase    = 0x180000000

	machineAMD64     = 0x8664
	fileExecutable   = 0x0002
	fileLargeAddress = 0x0020
	fileDLL          = 0x2000
	magicPE32Plus    = 0x20b
	subsystemConsole = 3
	dllNXCompat      = 0x0100
	sectionData      = 0x00000040 // IMAGE_SCN_CNT_INITIALIZED_DATA
	sectionRead      = 0x40000000 // IMAGE_SCN_MEM_READ
	optHeaderSize    = 240        // PE32+ with 16 data directories
	exportDirSize    = 40         // IMAGE_EXPORT_DIRECTORY
)

// ForwarderDLL returns a PE32+ (x86-64) DLL named name whose exports are
// all forwarders: exports maps an export name to its target, "dll.Function".
// The DLL holds no code, so it needs no relocations and no entry point.
//
// The file is headers (DOS stub, "PE\0\0", COFF header, optional header, one
// section header) padded to 0x200, then the .edata section at RVA 0x1000:
//
//	+------------------------+ 0x1000
//	| IMAGE_EXPORT_DIRECTORY |  40 bytes
//	| function RVAs          |  4 bytes each, pointing at forwarder strings
//	| name RVAs              |  4 bytes each, names sorted
//	| name ordinals          |  2 bytes each
//	| strings                |  DLL name, export names, forwarder targets
//	+------------------------+
//
// An export whose RVA falls inside the export directory is a forwarder, so
// the export data directory covers the whole section.
func ForwarderDLL(name string, exports map[string]string) []byte {
	names := make([]string, 0, len(exports))
	for n := range exports {
		names = append(names, n)
	}
	sort.Strings(names) // the loader binary-searches the name table
	n := uint32(len(names))

	funcsOff := uint32(exportDirSize)
	namesOff := funcsOff + 4*n
	ordsOff := namesOff + 4*n
	strOff := ordsOff + 2*n
	var strs bytes.Buffer
	addStr := func(s string) uint32 {
		rva := sectionRVA + strOff + uint32(strs.Len())
		strs.WriteString(s)
		strs.WriteByte(0)
		return rva
	}
	dllName := addStr(name)
	nameRVAs := make([]uint32, n)
	targetRVAs := make([]uint32, n)
	for i, e := range names {
		nameRVAs[i] = addStr(e)
		targetRVAs[i] = addStr(exports[e])
	}

	var sec bytes.Buffer
	le := binary.LittleEndian
	w := func(v any) { binary.Write(&sec, le, v) }
	w(struct {
		Characteristics, TimeDateStamp uint32
		MajorVersion, MinorVersion     uint16
		Name, Base                     uint32
		NumberOfFunctions              uint32
		NumberOfNames                  uint32
		AddressOfFunctions             uint32
		AddressOfNames                 uint32
		AddressOfNameOrdinals          uint32
	}{Name: dllName, Base: 1, NumberOfFunctions: n, NumberOfNames: n,
		AddressOfFunctions: sectionRVA + funcsOff, AddressOfNames: sectionRVA + namesOff,
		AddressOfNameOrdinals: sectionRVA + ordsOff})
	w(targetRVAs)
	w(nameRVAs)
	for i := range names {
		w(uint16(i))
	}
	sec.Write(strs.Bytes())
	secSize := uint32(sec.Len())
	rawSize := align(secSize, fileAlign)

	var f bytes.Buffer
	fw := func(v any) { binary.Write(&f, le, v) }
	// DOS header: "MZ", and e_lfanew at 0x3c pointing just past it.
	dos := make([]byte, 0x40)
	copy(dos, "MZ")
	le.PutUint32(dos[0x3c:], 0x40)
	f.Write(dos)
	f.WriteString("PE\x00\x00")
	fw(struct {
		Machine              uint16
		NumberOfSections     uint16
		TimeDateStamp        uint32
		PointerToSymbolTable uint32
		NumberOfSymbols      uint32
		SizeOfOptionalHeader uint16
		Characteristics      uint16
	}{machineAMD64, 1, 0, 0, 0, optHeaderSize, fileExecutable | fileLargeAddress | fileDLL})
	type dataDir struct{ VirtualAddress, Size uint32 }
	var dirs [16]dataDir
	dirs[0] = dataDir{sectionRVA, secSize} // export table
	fw(struct {
		Magic                    uint16
		MajorLinker, MinorLinker uint8
		SizeOfCode               uint32
		SizeOfInitializedData    uint32
		SizeOfUninitializedData  uint32
		AddressOfEntryPoint      uint32
		BaseOfCode               uint32
		ImageBase                uint64
		SectionAlignment         uint32
		FileAlignment            uint32
		MajorOS, MinorOS         uint16
		MajorImage, MinorImage   uint16
		MajorSubsystem           uint16
		MinorSubsystem           uint16
		Win32VersionValue        uint32
		SizeOfImage              uint32
		SizeOfHeaders            uint32
		CheckSum                 uint32
		Subsystem                uint16
		DllCharacteristics       uint16
		SizeOfStackReserve       uint64
		SizeOfStackCommit        uint64
		SizeOfHeapReserve        uint64
		SizeOfHeapCommit         uint64
		LoaderFlags              uint32
		NumberOfRvaAndSizes      uint32
		DataDirectory            [16]dataDir
	}{
		Magic: magicPE32Plus, SizeOfInitializedData: rawSize, BaseOfCode: sectionRVA,
		ImageBase: imageBase, SectionAlignment: sectionAlign, FileAlignment: fileAlign,
		MajorOS: 6, MajorSubsystem: 6,
		SizeOfImage:   sectionRVA + align(secSize, sectionAlign),
		SizeOfHeaders: fileAlign, Subsystem: subsystemConsole, DllCharacteristics: dllNXCompat,
		SizeOfStackReserve: 0x100000, SizeOfStackCommit: 0x1000,
		SizeOfHeapReserve: 0x100000, SizeOfHeapCommit: 0x1000,
		NumberOfRvaAndSizes: 16, DataDirectory: dirs,
	})
	fw(struct {
		Name                 [8]byte
		VirtualSize          uint32
		VirtualAddress       uint32
		SizeOfRawData        uint32
		PointerToRawData     uint32
		PointerToRelocations uint32
		PointerToLinenumbers uint32
		NumberOfRelocations  uint16
		NumberOfLinenumbers  uint16
		Characteristics      uint32
	}{Name: [8]byte{'.', 'e', 'd', 'a', 't', 'a'}, VirtualSize: secSize, VirtualAddress: sectionRVA,
		SizeOfRawData: rawSize, PointerToRawData: fileAlign, Characteristics: sectionData | sectionRead})
	f.Write(make([]byte, fileAlign-f.Len()))
	f.Write(sec.Bytes())
	f.Write(make([]byte, rawSize-secSize))
	return f.Bytes()
}

func align(n, a uint32) uint32 { return (n + a - 1) &^ (a - 1) }
