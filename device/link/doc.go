// Package link is the `warren link` toolkit: it lists the host's interfaces
// and classifies each as physical or virtual (and which kind), and creates
// and deletes virtual links (macvlan, macvtap, veth, ifb, bridge, vxlan,
// tun, tap) to fan a tunnel out to local namespaces.
package link
