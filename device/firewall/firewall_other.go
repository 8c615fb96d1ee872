//go:build !linux

package firewall

import "errors"

// NFT stands for nftables, which only Linux has: every method fails with
// errors.ErrUnsupported.
type NFT struct{}

// New returns an NFT whose methods fail: there is no nftables here.
func New(netnsFD int) *NFT { return &NFT{} }

// Apply fails with errors.ErrUnsupported.
func (n *NFT) Apply(r Rules) error { return errors.ErrUnsupported }

// Remove fails with errors.ErrUnsupported.
func (n *NFT) Remove(name string) error { return errors.ErrUnsupported }

// Tables fails with errors.ErrUnsupported.
func (n *NFT) Tables() ([]string, error) { return nil, errors.ErrUnsupported }
