package main

import (
	"context"
	"errors"
	"io"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.ErrUnsupported // TODO(skeleton): replaced by its owner
}
