package main

import (
	"errors"
	"io"
)

func runGenkey(args []string, stdout io.Writer) error { return errors.ErrUnsupported }

func runPubkey(args []string, stdin io.Reader, stdout io.Writer) error {
	return errors.ErrUnsupported
}

func runGenpsk(args []string, stdout io.Writer) error { return errors.ErrUnsupported }
