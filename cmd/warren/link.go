package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"

	"github.com/warrenvpn/warren/device/link"
)

const linkUsage = `usage: warren link ls [--all-namespaces] [--netns NS] [--json]
       warren link add macvlan|macvtap NAME --parent DEV [--parent-netns NS] [--mode bridge|vepa|private|passthru|source]
       warren link add ipvlan NAME --parent DEV [--parent-netns NS] [--mode l2|l3|l3s]
       warren link add veth NAME --peer NAME [--peer-netns NS] [--peer-address CIDR]
       warren link add ifb NAME [--redirect-from DEV]
       warren link add bridge NAME [--ports DEV,...] [--hairpin]
       warren link add tun|tap NAME [--owner UID] [--multi-queue]
       warren link add vxlan NAME --vni N [--port PORT] [--parent DEV]
       warren link add dummy NAME
       warren link del NAME [--netns NS]

Every add also takes [--netns NS] (where the new link goes) and
[--address CIDR]; new links are brought up.
`

// runLink runs `warren link`: ls, add and del.
func runLink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: link: no subcommand (ls, add or del)", errUsage)
	}
	switch args[0] {
	case "ls", "list", "show":
		return runLinkList(args[1:], stdout, stderr)
	case "add":
		return runLinkAdd(args[1:], stdout, stderr)
	case "del", "delete", "rm":
		return runLinkDel(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, linkUsage)
		return nil
	}
	return fmt.Errorf("%w: link: unknown subcommand %q (ls, add or del)", errUsage, args[0])
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runLinkList(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("link ls")
	var opts link.ListOptions
	asJSON := fs.Bool("json", false, "print JSON")
	fs.BoolVar(&opts.AllNamespaces, "all-namespaces", false, "list every named namespace too")
	fs.BoolVar(&opts.AllNamespaces, "A", false, "short for --all-namespaces")
	fs.StringVar(&opts.Netns, "netns", "", "list this namespace instead of the current one")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: link ls: unexpected argument %q", errUsage, pos[0])
	}
	// With --all-namespaces the links come with the errors of the
	// namespaces that could not be listed: print what there is, then fail.
	links, listErr := link.List(opts)
	if listErr != nil && links == nil {
		return listErr
	}
	if *asJSON {
		if links == nil {
			links = []link.Info{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(links)
	} else {
		err = printLinks(stdout, links, opts.AllNamespaces)
	}
	if err != nil {
		return err
	}
	return listErr
}

// printLinks writes the link table.
func printLinks(w io.Writer, links []link.Info, withNetns bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if withNetns {
		fmt.Fprint(tw, "NETNS\t")
	}
	fmt.Fprintln(tw, "INDEX\tNAME\tKIND\tTYPE\tMAC\tMTU\tSTATE\tDETAILS\tWHY")
	for _, l := range links {
		if withNetns {
			fmt.Fprintf(tw, "%s\t", dash(l.Netns))
		}
		typ := "physical"
		if l.Virtual {
			typ = "virtual"
		}
		mac := dash(l.MAC)
		if l.LocallyAdministered {
			mac += " (local)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			l.Index, l.Name, l.Kind, typ, mac, l.MTU, l.State, dash(linkDetails(l)), l.Why)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// linkDetails renders what a link's kind adds, for the table.
func linkDetails(l link.Info) string {
	var d []string
	if l.Master != "" {
		d = append(d, "master "+l.Master)
	}
	if l.Hairpin != nil {
		d = append(d, "hairpin "+onOff(*l.Hairpin))
	}
	if l.Parent != "" {
		d = append(d, "parent "+l.Parent)
	}
	if l.Mode != "" {
		d = append(d, "mode "+l.Mode)
	}
	if l.TapDevice != "" {
		d = append(d, l.TapDevice)
	}
	if p := l.Peer; p != nil {
		name := p.Name
		if name == "" {
			name = "?"
		}
		s := fmt.Sprintf("peer %s (index %d", name, p.Index)
		if p.Netns != l.Netns {
			s += ", netns " + dash(p.Netns)
		}
		d = append(d, s+")")
	}
	if t := l.TUN; t != nil {
		s := fmt.Sprintf("owner %d", t.Owner)
		if t.MultiQueue {
			s += " multi-queue"
		}
		if t.Persistent {
			s += " persistent"
		}
		d = append(d, s)
	}
	if v := l.VXLAN; v != nil {
		d = append(d, fmt.Sprintf("vni %d port %d", v.VNI, v.Port))
	}
	return strings.Join(d, ", ")
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// prefixFlag is a flag.Value holding an optional CIDR prefix.
type prefixFlag struct{ p *netip.Prefix }

func (f prefixFlag) String() string {
	if f.p == nil || !f.p.IsValid() {
		return ""
	}
	return f.p.String()
}

func (f prefixFlag) Set(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("want an address with prefix length, like 198.18.0.1/24: %v", err)
	}
	*f.p = p
	return nil
}

func runLinkAdd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("link add")
	var spec link.Spec
	var ports string
	fs.StringVar(&spec.Netns, "netns", "", "namespace for the new link")
	fs.Var(prefixFlag{&spec.Address}, "address", "address (CIDR) for the new link")
	fs.StringVar(&spec.Parent, "parent", "", "lower device (macvlan, macvtap, ipvlan, vxlan)")
	fs.StringVar(&spec.ParentNetns, "parent-netns", "", "namespace of the parent (default: current)")
	fs.StringVar(&spec.Mode, "mode", "", "macvlan/macvtap or ipvlan mode")
	fs.StringVar(&spec.Peer, "peer", "", "veth peer name")
	fs.StringVar(&spec.PeerNetns, "peer-netns", "", "namespace for the veth peer")
	fs.Var(prefixFlag{&spec.PeerAddress}, "peer-address", "address (CIDR) for the veth peer")
	fs.StringVar(&spec.RedirectFrom, "redirect-from", "", "ifb: redirect this device's ingress to the ifb")
	fs.StringVar(&ports, "ports", "", "bridge: comma-separated ports")
	fs.BoolVar(&spec.Hairpin, "hairpin", false, "bridge: hairpin mode on the ports")
	fs.IntVar(&spec.Owner, "owner", 0, "tun/tap: owner user ID")
	fs.BoolVar(&spec.MultiQueue, "multi-queue", false, "tun/tap: multi-queue device")
	fs.IntVar(&spec.VNI, "vni", 0, "vxlan: network identifier")
	fs.IntVar(&spec.Port, "port", 0, "vxlan: UDP port (default 4789)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return fmt.Errorf("%w: link add: want KIND NAME, got %d arguments", errUsage, len(pos))
	}
	spec.Kind, spec.Name = pos[0], pos[1]
	if ports != "" {
		spec.Ports = strings.Split(ports, ",")
	}
	info, err := link.Add(spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "added %s %s (index %d", info.Kind, info.Name, info.Index)
	if info.Netns != "" {
		fmt.Fprintf(stdout, ", netns %s", info.Netns)
	}
	fmt.Fprintln(stdout, ")")
	if info.TapDevice != "" {
		fmt.Fprintf(stdout, "character device %s\n", info.TapDevice)
	}
	return nil
}

func runLinkDel(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("link del")
	netns := fs.String("netns", "", "namespace of the link")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: link del: want NAME", errUsage)
	}
	if err := link.Delete(pos[0], *netns); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %s\n", pos[0])
	return nil
}
