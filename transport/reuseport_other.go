//go:build !linux

package transport

import (
	"errors"
	"fmt"
)

// ListenGroup is Listen for n = 1; several sockets on one port need
// Linux's SO_REUSEPORT group.
func ListenGroup(opts Options, n int) ([]*UDP, error) {
	if n != 1 {
		return nil, fmt.Errorf("listen UDP port %d: %d sockets: %w", opts.Port, n, errors.ErrUnsupported)
	}
	u, err := Listen(opts)
	if err != nil {
		return nil, err
	}
	return []*UDP{u}, nil
}
