// Package mesh owns `warren mesh`: a node's [Mesh] section, its document in
// etcd, and the loop that keeps a tunnel's peers in line with the nodes
// published there.
//
// Each node publishes its public key, endpoints, allowed IPs, labels and
// mode under PREFIX/NETWORK/nodes/PUBLIC_KEY, on an etcd lease it keeps
// alive; a clean stop deletes the key, a crash lets the lease expire. The
// node lists the network, watches it from the next revision and turns every
// change into a Diff of peers, which an Applier applies to the running
// tunnel without touching the other peers. Private keys never leave the
// node. docs/MESH.md describes running a mesh.
//
// The package parses and decides; it opens no device and changes no host
// state itself: the Applier does.
package mesh
