// Package device is the folder for warren's host side; it holds no code of
// its own. Its packages each do one job:
//
//   - device/tun: the TUN and TAP adapters the engine reads and writes
//     packets through, with their offload code (virtio-net headers, GSO
//     split, GRO coalesce);
//   - device/host: desired host state (addresses, MTU, link state, routes,
//     rules, sysctls) applied through netlink with undo, and the crash
//     journal;
//   - device/firewall: the nftables table of a full tunnel (wg-quick's
//     CVE-2019-14899 drop and conntrack mark save/restore);
//   - device/link: the `warren link` toolkit (list and classify interfaces,
//     create and delete virtual links).
//
// None of them encrypts or routes packets.
package device
