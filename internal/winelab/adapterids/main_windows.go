// Command adapterids prints, one a line, the interface index, the
// AdapterName (a GUID, the NetCfgInstanceId its adapter class key must
// carry) and the friendly name of every adapter GetAdaptersAddresses lists.
// Tests run it under Wine to learn the GUIDs Wine gives the host's links.
package main

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

func main() {
	size := uint32(15 << 10)
	var buf []byte
	var err error
	for range 3 {
		buf = make([]byte, size)
		err = windows.GetAdaptersAddresses(windows.AF_UNSPEC, windows.GAA_FLAG_INCLUDE_ALL_INTERFACES, 0,
			(*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])), &size)
		if !errors.Is(err, windows.ERROR_BUFFER_OVERFLOW) {
			break
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "adapterids: GetAdaptersAddresses: %v\n", err)
		os.Exit(1)
	}
	for a := (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])); a != nil; a = a.Next {
		fmt.Printf("%d %s %s\n", a.IfIndex, windows.BytePtrToString(a.AdapterName), windows.UTF16PtrToString(a.FriendlyName))
	}
}
