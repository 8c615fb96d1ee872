package winelab

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"testing"
)

// TestForwarderDLL parses the DLL with debug/pe and follows the export
// directory to the forwarder string.
func TestForwarderDLL(t *testing.T) {
	b := ForwarderDLL("bcryptprimitives.dll", map[string]string{"ProcessPrng": "advapi32.SystemFunction036"})
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("pe.NewFile: %v", err)
	}
	oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
	if !ok || f.Machine != pe.IMAGE_FILE_MACHINE_AMD64 || f.Characteristics&pe.IMAGE_FILE_DLL == 0 {
		t.Fatalf("not an x86-64 PE32+ DLL: machine %#x, characteristics %#x, optional header %T", f.Machine, f.Characteristics, f.OptionalHeader)
	}
	exp := oh.DataDirectory[pe.IMAGE_DIRECTORY_ENTRY_EXPORT]
	s := f.Section(".edata")
	if s == nil || exp.VirtualAddress != s.VirtualAddress {
		t.Fatalf("export directory %+v not at the .edata section %+v", exp, s)
	}
	data, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	at := func(rva uint32) []byte { return data[rva-s.VirtualAddress:] }
	cstr := func(rva uint32) string { b := at(rva); return string(b[:bytes.IndexByte(b, 0)]) }
	le := binary.LittleEndian
	if got := cstr(le.Uint32(data[12:])); got != "bcryptprimitives.dll" {
		t.Errorf("DLL name %q, want bcryptprimitives.dll", got)
	}
	nFuncs, nNames := le.Uint32(data[20:]), le.Uint32(data[24:])
	if nFuncs != 1 || nNames != 1 {
		t.Fatalf("%d functions and %d names, want 1 and 1", nFuncs, nNames)
	}
	funcRVA := le.Uint32(at(le.Uint32(data[28:])))
	nameRVA := le.Uint32(at(le.Uint32(data[32:])))
	if got := cstr(nameRVA); got != "ProcessPrng" {
		t.Errorf("export name %q, want ProcessPrng", got)
	}
	if funcRVA < exp.VirtualAddress || funcRVA >= exp.VirtualAddress+exp.Size {
		t.Errorf("function RVA %#x outside the export directory %+v: not a forwarder", funcRVA, exp)
	}
	if got := cstr(funcRVA); got != "advapi32.SystemFunction036" {
		t.Errorf("forwarder %q, want advapi32.SystemFunction036", got)
	}
}
