//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"syscall"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/lifecycle"
)

const reloadHelp = `usage: warren reload NAME

Asks the 'warren up' of interface NAME to re-read its config file and apply
the difference, as SIGHUP does: peers added, removed or changed as 'wg
syncconf' would (untouched peers keep their sessions), addresses, MTU,
routes and the nftables table. A file that does not parse changes nothing;
the error, with file and line, is in that warren's log.
`

// runReload asks the running instance of NAME to re-read its config file
// (SIGHUP to the process its pid file names, checked as runDown does). The
// outcome is in that instance's log.
func runReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: warren reload NAME", errUsage)
	}
	_, name, err := config.PathFor(args[0])
	if err != nil {
		return err
	}
	pid, ok := lifecycle.Running(lifecycle.DefaultRunDir, name)
	if !ok {
		return fmt.Errorf("%s is not up", name)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload %s (pid %d): %w", name, pid, err)
	}
	return nil
}
