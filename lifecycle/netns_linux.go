package lifecycle

import (
	"fmt"
	"os"
	"syscall"
)

// NetnsInode returns the inode of the network namespace file at path
// (/proc/PID/ns/net, /run/netns/NAME), which names the namespace.
func NetnsInode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Ino == 0 {
		return 0, fmt.Errorf("%s: no inode", path)
	}
	return st.Ino, nil
}
