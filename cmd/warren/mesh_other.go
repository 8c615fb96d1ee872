//go:build !linux

package main

import (
	"context"
	"io"
)

func runMesh(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errLinuxOnly
}
