package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// command is one of warren's commands. The table below is the one list of
// them: run dispatches through it, and `warren help`, the bash completion
// and the tests read it.
type command struct {
	name    string
	args    string // what follows the name in the synopsis
	summary string // one line for `warren help`
	help    string // the whole text of `warren NAME --help`
	noFlags bool   // the command has no flags: an argument starting with "-" is a usage error
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// commands are warren's commands in the order `warren help` lists them.
// It is filled in init because two of the commands read the table.
var commands []*command

func init() {
	commands = []*command{
		{name: "up", args: "[--log-level L] FILE.conf|NAME", summary: "run a tunnel in the foreground", help: upHelp,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runUp(ctx, args, stdout, stderr)
			}},
		{name: "down", args: "NAME", summary: "stop a running tunnel", help: downHelp, noFlags: true,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runDown(ctx, args, stdout, stderr)
			}},
		{name: "reload", args: "NAME", summary: "re-read a running tunnel's config file and apply the difference", help: reloadHelp, noFlags: true,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runReload(ctx, args, stdout, stderr)
			}},
		{name: "mesh", args: "[--log-level L] FILE.conf|NAME", summary: "run a tunnel whose peers come from etcd (docs/MESH.md)", help: meshHelp,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runMesh(ctx, args, stdout, stderr)
			}},
		{name: "show", args: "[--json] [NAME|all|interfaces [VIEW]]", summary: "show tunnel state and drops, as wg show does", help: showHelp,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runShow(ctx, args, stdout, stderr)
			}},
		{name: "demo", args: "[--mode tun|tap] [--mb N] [--pings N]", summary: "run a tunnel between two namespaces and send traffic through it", help: demoHelp,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runDemo(ctx, args, stdout, stderr)
			}},
		{name: "bench", args: "[flags]", summary: "measure tunnel throughput, packet rate and latency", help: benchHelp(),
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runBench(ctx, args, stdout, stderr)
			}},
		{name: "link", args: "ls|add|del ...", summary: "list, classify and create virtual links", help: linkUsage,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runLink(ctx, args, stdout, stderr)
			}},
		{name: "genkey", summary: "print a new private key", help: genkeyHelp, noFlags: true,
			run: func(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
				return runGenkey(args, stdout)
			}},
		{name: "pubkey", summary: "read a private key on stdin, print its public key", help: pubkeyHelp, noFlags: true,
			run: func(_ context.Context, args []string, stdin io.Reader, stdout, _ io.Writer) error {
				return runPubkey(args, stdin, stdout)
			}},
		{name: "genpsk", summary: "print a new preshared key", help: genpskHelp, noFlags: true,
			run: func(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
				return runGenpsk(args, stdout)
			}},
		{name: "userspace", args: "[-f] [--log-level L] IFACE", summary: "a bare device for wg and wg-quick, like wireguard-go", help: userspaceHelp,
			run: func(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
				return runUserspace(ctx, args, stdout, stderr)
			}},
		{name: "completion", args: "bash", summary: "print the bash completion script", help: completionHelp, noFlags: true,
			run: func(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
				return runCompletion(args, stdout)
			}},
		{name: "version", summary: "print warren's version and commit (also --version)", help: versionHelp, noFlags: true,
			run: func(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
				return runVersion(args, stdout)
			}},
		{name: "help", args: "[COMMAND]", summary: "print this help, or a command's", help: helpHelp, noFlags: true,
			run: func(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
				return runHelp(args, stdout)
			}},
	}
}

// lookup returns the command called name, or nil.
func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// usage is the text of `warren help`.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: warren <command> [arguments]\n\ncommands:\n")
	for _, c := range commands {
		syn := c.name
		if c.args != "" {
			syn += " " + c.args
		}
		if len(syn) > 22 {
			fmt.Fprintf(&b, "  %s\n  %-22s  %s\n", syn, "", c.summary)
		} else {
			fmt.Fprintf(&b, "  %-22s  %s\n", syn, c.summary)
		}
	}
	b.WriteString(`
wg-quick starts warren as 'warren IFACE' when WG_QUICK_USERSPACE_IMPLEMENTATION
is set (WG_QUICK_USERSPACE_IMPLEMENTATION=warren wg-quick up wg0).

'warren COMMAND --help' (or -h) prints a command's help. Errors are printed
once, as one line starting with "warren: ".

exit status:
  0  success (a tunnel stopped by a signal or 'warren down' is a success)
  1  a runtime error
  2  a malformed command line (unknown command or flag, missing argument)

See warren(8) and README.md.
`)
	return b.String()
}

func runHelp(args []string, stdout io.Writer) error {
	switch len(args) {
	case 0:
		_, err := fmt.Fprint(stdout, usage())
		return err
	case 1:
		c := lookup(args[0])
		if c == nil {
			return fmt.Errorf("%w: help: unknown command %q", errUsage, args[0])
		}
		_, err := fmt.Fprint(stdout, c.help)
		return err
	}
	return fmt.Errorf("%w: help takes at most one command", errUsage)
}

// version describes this binary from its build information: the module
// version, the VCS commit and time (with "modified" for a dirty tree),
// the Go version and the platform.
func version(bi *debug.BuildInfo, ok bool) string {
	v := "(unknown)"
	var details []string
	if ok {
		v = bi.Main.Version
		if v == "" {
			v = "(devel)"
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			details = append(details, "commit "+rev)
		} else {
			details = append(details, "commit unknown")
		}
		if t := settings["vcs.time"]; t != "" {
			details = append(details, t)
		}
		if settings["vcs.modified"] == "true" {
			details = append(details, "modified")
		}
	}
	s := "warren " + v
	if len(details) > 0 {
		s += " (" + strings.Join(details, ", ") + ")"
	}
	return s + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
}

func runVersion(args []string, stdout io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: version takes no arguments", errUsage)
	}
	_, err := fmt.Fprint(stdout, version(debug.ReadBuildInfo()))
	return err
}

// benchHelp is the help of `warren bench`, with its flags and their
// defaults as the flag set has them.
func benchHelp() string {
	fs := newFlagSet("bench")
	defineBenchFlags(fs)
	var b strings.Builder
	b.WriteString(benchUsage)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

const upHelp = `usage: warren up [--log-level L] FILE.conf|NAME

Runs a tunnel in the foreground from a wg-quick config file. NAME reads
/etc/wireguard/NAME.conf; the interface is named after the file. warren
adds the addresses, routes, rules, sysctls, nftables table and DNS the file
asks for (and logs each), and removes all of them when it stops: on SIGINT,
SIGTERM or SIGQUIT ('warren down' sends SIGTERM; also during start-up,
PostUp killed, exit 0), when the interface or its control socket is deleted
from outside, or on a failure. SIGHUP ('warren reload') re-reads the file
and applies the difference.

flags:
  --log-level L    debug, info, warn or error (default info)
  --log-format F   text or json (default text)
`

const meshHelp = `usage: warren mesh [--log-level L] FILE.conf|NAME

Runs a tunnel as 'warren up' does, then joins the mesh its [Mesh] section
names: publishes this node (public key, endpoints, allowed IPs, labels) in
etcd under a lease and takes every other node of the network as a peer,
following additions and removals as they happen without disturbing the
other peers. SIGINT or SIGTERM delete the node from etcd and take the
interface down. See docs/MESH.md.

flags:
  --log-level L   debug, info, warn or error (default info)
`

const downHelp = `usage: warren down NAME

Stops the 'warren up' of interface NAME (or of NAME.conf) in this network
namespace: sends SIGTERM to the pid in /run/warren/NAME.net-INODE.pid (INODE:
the namespace's), if that process is still the warren that wrote it, and
waits up to 10 s for it to end. If it is not running (killed), restores what
it left behind from its crash journal /run/warren/NAME.net-INODE.host.
`

const demoHelp = `usage: warren demo [--mode tun|tap] [--mb N] [--pings N]

Creates two network namespaces joined by a veth pair, runs 'warren up' in
each with fresh keys, pings through the tunnel over IPv4 and IPv6, moves
N MiB over TCP with a SHA-256 check, and removes everything, also on
Ctrl-C. Needs root.

With --mode tap the tunnels carry Ethernet (Mode = tap): each side bridges
its TAP to a host namespace, the two hosts share one subnet, and the demo
shows the pings, the ARP and neighbour entries they learned across the
tunnel and site A's MAC table.

flags:
  --mode M    tun (IP packets, the default) or tap (Ethernet frames)
  --mb N      size of the TCP transfer in MiB (default 256)
  --pings N   pings per address family (default 5)
`

const genkeyHelp = `usage: warren genkey

Prints a new private key in base64, as wg genkey does.
`

const pubkeyHelp = `usage: warren pubkey < private.key

Reads a base64 private key on standard input and prints its public key, as
wg pubkey does.
`

const genpskHelp = `usage: warren genpsk

Prints a new preshared key in base64, as wg genpsk does.
`

const userspaceHelp = `usage: warren userspace [-f] [--log-level L] IFACE

Creates the TUN IFACE and its control socket and nothing else, like
wireguard-go IFACE; 'wg' and 'ip' configure it. This is how wg-quick runs
warren:

    WG_QUICK_USERSPACE_IMPLEMENTATION=warren wg-quick up wg0

wg-quick starts it as 'warren wg0'. Without -f (or WG_PROCESS_FOREGROUND=1)
it detaches and returns once the control socket answers, and logs to
/run/warren/IFACE.log (removed after a normal stop).

flags:
  -f, --foreground   stay in the foreground
  --log-level L      debug, info, warn or error (default info)
  --log-format F     text or json (default text)
`

const completionHelp = `usage: warren completion bash

Prints the bash completion script (commands, flags, show's views, config
names from /etc/wireguard and the names of running interfaces). Install it
with

    warren completion bash > /etc/bash_completion.d/warren

The same script is dist/warren.bash in the source tree.
`

const versionHelp = `usage: warren version
       warren --version

Prints the module version, the commit and time of the source it was built
from ("modified" when the tree had uncommitted changes), the Go version
and the platform.
`

const helpHelp = `usage: warren help [COMMAND]

Prints the list of commands and the exit statuses, or the help of COMMAND.
`
