//go:build !linux

package host

import "errors"

// ProcSys reads and writes sysctls. Only Linux has them.
type ProcSys struct{}

var _ SysctlFS = ProcSys{}

// ReadSysctl returns errors.ErrUnsupported.
func (ProcSys) ReadSysctl(key string) (string, error) { return "", errors.ErrUnsupported }

// WriteSysctl returns errors.ErrUnsupported.
func (ProcSys) WriteSysctl(key, value string) error { return errors.ErrUnsupported }
