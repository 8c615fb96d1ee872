package link

// Listing adapters on Windows: GetAdaptersAddresses gives every adapter's
// name, index, MAC, MTU and state; its AdapterName (a GUID) is the
// NetCfgInstanceId of a subkey of the network adapter class key, whose
// Characteristics value says whether the adapter is physical.

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// adapterClassKey is the device class key of network adapters.
const adapterClassKey = `SYSTEM\CurrentControlSet\Control\Class\{4d36e972-e325-11ce-bfc1-08002be10318}`

// readCharacteristics reads the Characteristics of every adapter under
// the class key, by NetCfgInstanceId (lower case).
func readCharacteristics() (map[string]characteristics, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, adapterClassKey, registry.ENUMERATE_SUB_KEYS)
	if err != nil {
		return nil, fmt.Errorf("open adapter class key: %w", err)
	}
	defer k.Close()
	names, err := k.ReadSubKeyNames(-1)
	if err != nil {
		return nil, fmt.Errorf("read adapter class key: %w", err)
	}
	out := make(map[string]characteristics, len(names))
	for _, n := range names {
		sub, err := registry.OpenKey(k, n, registry.QUERY_VALUE)
		if err != nil {
			continue // "Properties" and keys we may not read
		}
		id, _, err1 := sub.GetStringValue("NetCfgInstanceId")
		c, _, err2 := sub.GetIntegerValue("Characteristics")
		sub.Close()
		if err1 == nil && err2 == nil {
			out[strings.ToLower(id)] = characteristics(c)
		}
	}
	return out, nil
}

// List lists the network adapters, classified by the Characteristics
// of their class key. Namespaces do not exist on Windows: opts.Netns must be
// empty.
func List(opts ListOptions) ([]Info, error) {
	if opts.Netns != "" {
		return nil, fmt.Errorf("%w: %q (no network namespaces on windows)", ErrNetnsNotFound, opts.Netns)
	}
	chars, err := readCharacteristics()
	if err != nil {
		return nil, err
	}
	size := uint32(15 << 10)
	var buf []byte
	for range 3 {
		buf = make([]byte, size)
		err = windows.GetAdaptersAddresses(windows.AF_UNSPEC, windows.GAA_FLAG_INCLUDE_ALL_INTERFACES, 0,
			(*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])), &size)
		if !errors.Is(err, windows.ERROR_BUFFER_OVERFLOW) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("GetAdaptersAddresses: %w", err)
	}
	var out []Info
	for a := (*windows.IpAdapterAddresses)(unsafe.Pointer(&buf[0])); a != nil; a = a.Next {
		mac := net.HardwareAddr(a.PhysicalAddress[:a.PhysicalAddressLength])
		info := Info{
			Name:                windows.UTF16PtrToString(a.FriendlyName),
			Index:               int(a.IfIndex),
			Kind:                "adapter",
			MAC:                 mac.String(),
			LocallyAdministered: isLocallyAdministered(mac),
			MTU:                 int(a.Mtu),
			State:               "down",
		}
		if a.OperStatus == windows.IfOperStatusUp {
			info.State = "up"
		}
		if a.IfType == windows.IF_TYPE_SOFTWARE_LOOPBACK {
			info.Kind = "loopback"
		}
		guid := strings.ToLower(windows.BytePtrToString(a.AdapterName))
		if c, ok := chars[guid]; ok {
			info.Virtual, info.Why = c.classify()
		} else {
			info.Virtual, info.Why = true, "no adapter class key entry"
		}
		out = append(out, info)
	}
	return out, nil
}

// Add creates a virtual link; on Windows it is not implemented.
func Add(spec Spec) (Info, error) { return Info{}, errors.ErrUnsupported }

// Delete deletes a link; on Windows it is not implemented.
func Delete(name, netnsName string) error { return errors.ErrUnsupported }
