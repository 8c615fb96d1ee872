//go:build !linux

package lifecycle

import "errors"

// NetnsInode reports errors.ErrUnsupported: network namespaces are Linux's.
func NetnsInode(path string) (uint64, error) { return 0, errors.ErrUnsupported }
