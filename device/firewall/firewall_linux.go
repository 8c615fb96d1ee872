package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NFT makes warren's table through nftables' netlink interface.
type NFT struct {
	netns int // network namespace fd; 0: the calling thread's
}

// New returns an NFT working in the calling thread's network namespace,
// or, with netnsFD > 0, in that namespace (tests).
func New(netnsFD int) *NFT { return &NFT{netns: netnsFD} }

func (n *NFT) conn() (*nftables.Conn, error) {
	if n.netns > 0 {
		return nftables.New(nftables.WithNetNSFd(n.netns))
	}
	return nftables.New()
}

// Apply installs the table r describes, replacing a table of that name in
// the same transaction; with r empty it removes it.
func (n *NFT) Apply(r Rules) error {
	if r.IsEmpty() {
		return n.Remove(TableName(r.Interface))
	}
	c, err := n.conn()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	name := TableName(r.Interface)
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		// Adding before deleting makes the delete succeed whether or
		// not the table was there.
		t := &nftables.Table{Name: name, Family: fam}
		c.AddTable(t)
		c.DelTable(t)
	}
	for _, f := range r.families() {
		addFamily(c, name, r, f)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: add table %s: %w", name, err)
	}
	return nil
}

// Remove deletes table name in both families; a table that is not there
// is not an error.
func (n *NFT) Remove(name string) error {
	c, err := n.conn()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		t := &nftables.Table{Name: name, Family: fam}
		c.AddTable(t)
		c.DelTable(t)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table %s: %w", name, err)
	}
	return nil
}

// Tables returns the names of the tables in the namespace, as "ip NAME"
// or "ip6 NAME", for tests that compare the host before and after.
func (n *NFT) Tables() ([]string, error) {
	c, err := n.conn()
	if err != nil {
		return nil, err
	}
	ts, err := c.ListTables()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range ts {
		out = append(out, fmt.Sprintf("%s %s", familyName(t.Family), t.Name))
	}
	return out, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprint(f)
}

// addFamily queues the table of family f with its three chains.
func addFamily(c *nftables.Conn, name string, r Rules, f family) {
	fam, daddrOffset, addrLen := nftables.TableFamilyIPv4, uint32(16), uint32(4)
	if f.name == "ip6" {
		fam, daddrOffset, addrLen = nftables.TableFamilyIPv6, 24, 16
	}
	t := c.AddTable(&nftables.Table{Name: name, Family: fam})
	preraw := c.AddChain(&nftables.Chain{Name: "preraw", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-300)})
	premangle := c.AddChain(&nftables.Chain{Name: "premangle", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-150)})
	postmangle := c.AddChain(&nftables.Chain{Name: "postmangle", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(-150)})

	for _, a := range f.addrs {
		// iifname != IFACE ip daddr ADDR fib saddr type != local drop
		c.AddRule(&nftables.Rule{Table: t, Chain: preraw, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(r.Interface)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: daddrOffset, Len: addrLen},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addrBytes(a)},
			&expr.Fib{Register: 1, FlagSADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: nativeUint32(unix.RTN_LOCAL)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	// meta l4proto udp meta mark set ct mark
	c.AddRule(&nftables.Rule{Table: t, Chain: premangle, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}})
	// meta l4proto udp mark FWMARK ct mark set mark
	c.AddRule(&nftables.Rule{Table: t, Chain: postmangle, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nativeUint32(r.FwMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
	}})
}

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes,
// zero padded.
func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

func addrBytes(a netip.Addr) []byte { return a.AsSlice() }

// nativeUint32 is v as a register holds it (marks and fib results are in
// host byte order).
func nativeUint32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}
