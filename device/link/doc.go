// Package link is the `warren link` toolkit: it lists the host's interfaces
// and classifies each as physical or virtual (and which kind), and creates
// and deletes virtual links (macvlan, macvtap, ipvlan, veth, ifb, bridge,
// vxlan, dummy, tun, tap) to fan a tunnel out to local namespaces.
//
// Creating and deleting links is Linux only. On Windows List works: an
// adapter is physical only when the Characteristics value of its network
// adapter class key (found by its NetCfgInstanceId) has NCF_PHYSICAL and
// neither NCF_VIRTUAL nor NCF_SOFTWARE_ENUMERATED (see linkclass.go).
// Elsewhere every call returns errors.ErrUnsupported.
package link
