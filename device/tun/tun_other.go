//go:build !linux

package tun

import (
	"errors"
	"net"
)

// TUN is a TUN interface. Only Linux has one for now.
type TUN struct{ name string }

// OpenTUN returns errors.ErrUnsupported outside Linux.
func OpenTUN(name string, mtu int) (*TUN, error) { return nil, errors.ErrUnsupported }

// OpenTUNQueues returns errors.ErrUnsupported outside Linux.
func OpenTUNQueues(name string, mtu, n int) ([]*TUN, error) { return nil, errors.ErrUnsupported }

// Read returns net.ErrClosed.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) { return 0, net.ErrClosed }

// Write returns net.ErrClosed.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) { return 0, net.ErrClosed }

// BatchSize is 1.
func (t *TUN) BatchSize() int { return 1 }

// MTU is 0.
func (t *TUN) MTU() int { return 0 }

// Name is the interface name.
func (t *TUN) Name() string { return t.name }

// Close does nothing.
func (t *TUN) Close() error { return nil }
