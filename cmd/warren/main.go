// Command warren is a userspace VPN and overlay for Linux that speaks the
// WireGuard protocol. See README.md and warren(8) (docs/warren.8).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// errUsage marks an error caused by a malformed command line (exit status 2).
var errUsage = errors.New("usage")

// Exit statuses, as `warren help` and warren(8) document them.
const (
	exitOK      = 0 // success, including a tunnel stopped by a signal or `warren down`
	exitFailure = 1 // a runtime error
	exitUsage   = 2 // a malformed command line
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(report(os.Stderr, os.Args[1:], err))
}

// report prints err, if any, as the one line `warren: <error>` (a usage
// error also gets a pointer to the command's help) and returns the exit
// status for it.
func report(stderr io.Writer, args []string, err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "warren: %v\n", err)
	if !errors.Is(err, errUsage) {
		return exitFailure
	}
	hint := "warren help"
	if len(args) > 0 && lookup(args[0]) != nil {
		hint = "warren " + args[0] + " --help"
	}
	fmt.Fprintf(stderr, "run '%s' for usage\n", hint)
	return exitUsage
}

// run executes one warren command. It is main without the process: tests
// call it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return fmt.Errorf("%w: no command", errUsage)
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		_, err := fmt.Fprint(stdout, usage())
		return err
	case "-version", "--version":
		name = "version"
	}
	c := lookup(name)
	if c == nil {
		if isWGQuickInvocation(args) {
			return runUserspace(ctx, args, stdout, stderr)
		}
		if strings.HasPrefix(name, "-") {
			return fmt.Errorf("%w: unknown flag %s (flags follow the command)", errUsage, name)
		}
		return fmt.Errorf("%w: unknown command %q", errUsage, name)
	}
	// Help is the same for every command, whatever else the line says, and
	// is never mistaken for an interface name.
	if wantsHelp(rest) {
		_, err := fmt.Fprint(stdout, c.help)
		return err
	}
	if c.noFlags {
		for _, a := range rest {
			if a == "--" {
				break
			}
			if len(a) > 1 && strings.HasPrefix(a, "-") {
				return fmt.Errorf("%w: %s: flag provided but not defined: %s", errUsage, name, a)
			}
		}
	}
	return c.run(ctx, rest, stdin, stdout, stderr)
}

// wantsHelp reports whether args ask for help (-h, -help or --help before
// any "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// newFlagSet returns a flag set for the command name that prints nothing:
// its errors come back from Parse and main prints them once, and help is
// answered by run before the command parses its flags.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args with fs and returns a usage error naming the
// command for a bad flag.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
	}
	return nil
}
