package netlab

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Probe reports, once per process, why network namespaces cannot be
// created, or nil if they can.
var Probe = sync.OnceValue(func() error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("no network namespace support: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		// Left locked: the thread ends in a throwaway namespace and dies.
		runtime.LockOSThread()
		done <- unix.Unshare(unix.CLONE_NEWNET)
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("cannot create a network namespace: %w", err)
	}
	return nil
})
