package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
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

// errNoResolver is SystemDNS's answer on a host with neither resolvconf nor
// resolvectl.
var errNoResolver = errors.New("neither resolvconf nor resolvectl (systemd-resolved) is installed")

// SystemDNS hands DNS to resolvconf where the host has it (as wg-quick
// does), and otherwise to systemd-resolved through resolvectl.
type SystemDNS struct{}

func (SystemDNS) pick() (DNS, error) {
	if _, err := exec.LookPath("resolvconf"); err == nil {
		return Resolvconf{}, nil
	}
	if _, err := exec.LookPath("resolvectl"); err == nil {
		return Resolvectl{}, nil
	}
	return nil, errNoResolver
}

// Set hands servers and search for iface to the host's resolver.
func (s SystemDNS) Set(ctx context.Context, iface string, servers, search []string) error {
	d, err := s.pick()
	if err != nil {
		return err
	}
	return d.Set(ctx, iface, servers, search)
}

// Unset removes what Set handed over for iface.
func (s SystemDNS) Unset(iface string) error {
	d, err := s.pick()
	if err != nil {
		return err
	}
	return d.Unset(iface)
}

// Resolvectl hands DNS servers and search domains to systemd-resolved for
// the link iface, with the routing domain "~." so that every name is
// looked up through the tunnel's servers while it is up.
type Resolvectl struct{}

// Set configures iface's servers and domains in systemd-resolved.
func (Resolvectl) Set(ctx context.Context, iface string, servers, search []string) error {
	if out, err := exec.CommandContext(ctx, "resolvectl", append([]string{"dns", iface}, servers...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("resolvectl dns: %v: %s", err, strings.TrimSpace(string(out)))
	}
	domains := append([]string{"domain", iface, "~."}, search...)
	if out, err := exec.CommandContext(ctx, "resolvectl", domains...).CombinedOutput(); err != nil {
		exec.Command("resolvectl", "revert", iface).Run()
		return fmt.Errorf("resolvectl domain: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Unset reverts iface's settings in systemd-resolved. A link that is gone
// took them with it.
func (Resolvectl) Unset(iface string) error {
	if _, err := net.InterfaceByName(iface); err != nil {
		return nil
	}
	if out, err := exec.Command("resolvectl", "revert", iface).CombinedOutput(); err != nil {
		return fmt.Errorf("resolvectl revert: %v: %s", err, strings.TrimSpace(string(out)))
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
