package main

import (
	"context"
	"errors"
	"io"
)

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.ErrUnsupported // TODO(skeleton): replaced by its owner
}

func runDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.ErrUnsupported // TODO(skeleton): replaced by its owner
}

func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.ErrUnsupported // TODO(skeleton): replaced by its owner
}
