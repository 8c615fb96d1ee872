// Command warren is a userspace VPN and overlay for Linux that speaks the
// WireGuard protocol. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// errUsage marks an error caused by a malformed command line.
var errUsage = errors.New("usage")

const usage = `usage: warren <command> [arguments]

commands:
  up FILE.conf|NAME   run a tunnel in the foreground
  down NAME           stop a running tunnel
  show [--json] [NAME]  show tunnel state and drops
  demo                run a tunnel between two namespaces and send traffic through it
  bench               measure tunnel throughput, packet rate and latency
  link                list, classify and create virtual links
  genkey              print a new private key
  pubkey              read a private key on stdin, print its public key
  genpsk              print a new preshared key
  userspace [-f] IFACE  a bare device for wg and wg-quick, like wireguard-go
                      (WG_QUICK_USERSPACE_IMPLEMENTATION=warren wg-quick up wg0)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "warren: %v\n", err)
		os.Exit(1)
	}
}

// run executes one warren command. It is main without the process: tests call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		return runUp(ctx, rest, stdout, stderr)
	case "down":
		return runDown(ctx, rest, stdout, stderr)
	case "show":
		return runShow(ctx, rest, stdout, stderr)
	case "demo":
		return runDemo(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "link":
		return runLink(ctx, rest, stdout, stderr)
	case "genkey":
		return runGenkey(rest, stdout)
	case "pubkey":
		return runPubkey(rest, stdin, stdout)
	case "genpsk":
		return runGenpsk(rest, stdout)
	case "userspace":
		return runUserspace(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	if isWGQuickInvocation(args) {
		return runUserspace(ctx, args, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}
