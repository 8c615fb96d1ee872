//go:build !linux

package netlab

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"

	"github.com/vishvananda/netlink"
)

// Namespace is a named network namespace. Only Linux has them.
type Namespace struct{ name string }

// NewNamespace returns errors.ErrUnsupported outside Linux.
func NewNamespace(prefix string) (*Namespace, error) { return nil, errors.ErrUnsupported }

// Name is the namespace's name.
func (n *Namespace) Name() string { return n.name }

// Handle returns nil outside Linux.
func (n *Namespace) Handle() *netlink.Handle { return nil }

// Do returns errors.ErrUnsupported outside Linux.
func (n *Namespace) Do(f func() error) error { return errors.ErrUnsupported }

// Command returns a command that fails to start outside Linux.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Err = errors.ErrUnsupported
	return cmd
}

// WaitLocal returns errors.ErrUnsupported outside Linux.
func (n *Namespace) WaitLocal(addr netip.Addr) error { return errors.ErrUnsupported }

// Close does nothing outside Linux.
func (n *Namespace) Close() error { return nil }

// NewLab returns errors.ErrUnsupported outside Linux.
func NewLab(prefix string, mtu int) (*Lab, error) { return nil, errors.ErrUnsupported }

// Close does nothing outside Linux.
func (l *Lab) Close() error { return nil }
