//go:build !linux && !windows

package device

import "errors"

// ListLinks lists network interfaces; on this platform it is not
// implemented.
func ListLinks(opts ListOptions) ([]LinkInfo, error) { return nil, errors.ErrUnsupported }

// AddLink creates a virtual link; on this platform it is not implemented.
func AddLink(spec LinkSpec) (LinkInfo, error) { return LinkInfo{}, errors.ErrUnsupported }

// DeleteLink deletes a link; on this platform it is not implemented.
func DeleteLink(name, netnsName string) error { return errors.ErrUnsupported }
