//go:build !linux

package netlab

import "errors"

// Probe reports why network namespaces cannot be created: they exist only
// on Linux.
func Probe() error { return errors.ErrUnsupported }
