//go:build !windows

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "adapterids: lists Windows adapters; build it with GOOS=windows")
	os.Exit(1)
}
