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
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.l.Close() })
	return l.closeErr
}

// watcher is a stand-in: the socket file is not watched.
type watcher struct{}

// fileID is a stand-in: socket files are not identified.
type fileID struct{}
