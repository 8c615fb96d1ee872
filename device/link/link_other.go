//go:build !linux && !windows

package link

import "errors"

// List lists network interfaces; on this platform it is not
// implemented.
func List(opts ListOptions) ([]Info, error) { return nil, errors.ErrUnsupported }

// Add creates a virtual link; on this platform it is not implemented.
func Add(spec Spec) (Info, error) { return Info{}, errors.ErrUnsupported }

// Delete deletes a link; on this platform it is not implemented.
func Delete(name, netnsName string) error { return errors.ErrUnsupported }
