//go:build !linux

package netlab

import "errors"

func canCreateNamespaces() error { return errors.ErrUnsupported }
