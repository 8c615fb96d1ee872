//go:build !linux

package uapi

import "errors"

// ListenDir is only implemented on Linux.
func ListenDir(dir, iface string) (*Listener, error) {
	if err := checkName(iface); err != nil {
		return nil, err
	}
	return nil, errors.ErrUnsupported
}

// Close stops listening.
func (l *Listener) Close() error { return l.l.Close() }
