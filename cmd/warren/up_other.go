//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
)

// errLinuxOnly is what the tunnel commands say elsewhere: the TUN, netlink
// and namespace code is Linux's.
var errLinuxOnly = errors.New("this command needs Linux")

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errLinuxOnly
}

func runDown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errLinuxOnly
}

func runReload(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errLinuxOnly
}

const reloadHelp = "usage: warren reload NAME\n\nNeeds Linux.\n"

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errLinuxOnly
}

func runUserspace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errLinuxOnly
}

func isWGQuickInvocation(args []string) bool { return false }
