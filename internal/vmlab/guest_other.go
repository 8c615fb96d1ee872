//go:build !linux

package vmlab

import (
	"context"
	"errors"
)

// Config describes a guest. Guests run on Linux hosts only.
type Config struct{}

// Guest is a running guest. Guests run on Linux hosts only.
type Guest struct{}

// Probe returns errors.ErrUnsupported: guests run on Linux hosts only.
func Probe() error { return errors.ErrUnsupported }

// Boot returns errors.ErrUnsupported: guests run on Linux hosts only.
func Boot(context.Context, Config) (*Guest, error) { return nil, errors.ErrUnsupported }

// Run returns errors.ErrUnsupported.
func (g *Guest) Run(context.Context, ...string) (string, error) { return "", errors.ErrUnsupported }

// Close does nothing.
func (g *Guest) Close() error { return nil }
