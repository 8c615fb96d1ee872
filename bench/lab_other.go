//go:build !linux

package bench

import (
	"context"
	"errors"
)

// newLab fails outside Linux: the lab needs network namespaces.
func newLab(ctx context.Context, o *Options) (lab, error) { return nil, errors.ErrUnsupported }
