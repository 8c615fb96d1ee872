//go:build !linux

package tun

import (
	"errors"
	"net"
)

// TAPBatchSize is the most frames one TAP Read returns or one Write takes.
const TAPBatchSize = 128 // frames

// TAP is a TAP interface. Only Linux has one for now.
type TAP struct{ name string }

// OpenTAP returns errors.ErrUnsupported outside Linux.
func OpenTAP(name string, mtu int, offload bool) (*TAP, error) { return nil, errors.ErrUnsupported }

// Offloads reports that none is on.
func (t *TAP) Offloads() (string, error) { return "off", nil }

// Read returns net.ErrClosed.
func (t *TAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) { return 0, net.ErrClosed }

// Write returns net.ErrClosed.
func (t *TAP) Write(bufs [][]byte, offset int) (int, error) { return 0, net.ErrClosed }

// BatchSize is TAPBatchSize.
func (t *TAP) BatchSize() int { return TAPBatchSize }

// MTU is 0.
func (t *TAP) MTU() int { return 0 }

// Name is the interface name.
func (t *TAP) Name() string { return t.name }

// Close does nothing.
func (t *TAP) Close() error { return nil }
