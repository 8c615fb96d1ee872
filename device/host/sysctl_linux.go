package host

import (
	"os"
	"strings"
)

// ProcSys reads and writes sysctls under /proc/sys. Network sysctls belong
// to the network namespace of the calling thread.
type ProcSys struct{}

var _ SysctlFS = ProcSys{}

// sysctlPath maps "net.ipv4.conf.all.x" to /proc/sys/net/ipv4/conf/all/x.
func sysctlPath(key string) string {
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
}

// ReadSysctl returns the value of key without the trailing newline.
func (ProcSys) ReadSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// WriteSysctl sets key to value.
func (ProcSys) WriteSysctl(key, value string) error {
	return os.WriteFile(sysctlPath(key), []byte(value), 0o644)
}
