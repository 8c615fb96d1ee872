package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// runHooks runs the commands of one wg-quick hook in order, %i replaced by
// the interface name, as wg-quick does; the first failure stops them.
func (t *Tunnel) runHooks(ctx context.Context, hook string, cmds []string) error {
	for _, c := range cmds {
		c = strings.ReplaceAll(c, "%i", t.name)
		t.log.Info("hook", "hook", hook, "cmd", c)
		if err := t.opts.RunHook(ctx, hook, c); err != nil {
			return fmt.Errorf("%s %q: %w", hook, c, err)
		}
	}
	return nil
}

// Resolvconf hands DNS servers and search domains to resolvconf under the
// name tun.IFACE, as wg-quick does.
type Resolvconf struct{}

// Set registers servers and search for iface.
func (Resolvconf) Set(ctx context.Context, iface string, servers, search []string) error {
	if _, err := exec.LookPath("resolvconf"); err != nil {
		return errors.New("resolvconf not found: install openresolv or resolvconf to apply DNS")
	}
	var b strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	cmd := exec.CommandContext(ctx, "resolvconf", "-a", "tun."+iface, "-m", "0", "-x")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("resolvconf: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Unset removes what Set registered for iface.
func (Resolvconf) Unset(iface string) error {
	if out, err := exec.Command("resolvconf", "-d", "tun."+iface, "-f").CombinedOutput(); err != nil {
		return fmt.Errorf("resolvconf -d: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
