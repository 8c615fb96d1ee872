// Package sdnotify speaks systemd's readiness protocol (sd_notify(3)): a
// service of Type=notify sends newline-separated KEY=VALUE lines in one
// datagram to the unix socket named by $NOTIFY_SOCKET. warren sends READY=1
// once traffic can flow, STATUS= lines a person reads in `systemctl
// status`, RELOADING=1 with MONOTONIC_USEC (systemd 253 and later want it)
// around a reload, and STOPPING=1. Outside systemd, NOTIFY_SOCKET is unset
// and every call does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// Notifier sends notifications to one socket. The zero Notifier and a nil
// *Notifier send nothing. Its methods are safe for concurrent use.
type Notifier struct {
	addr *net.UnixAddr // nil: no socket
}

// New returns a Notifier for the socket $NOTIFY_SOCKET names, or one that
// sends nothing if it is unset. A name starting with '@' is in the abstract
// namespace, as systemd allows.
func New() *Notifier { return ForSocket(os.Getenv("NOTIFY_SOCKET")) }

// ForSocket returns a Notifier for the socket at path ("" sends nothing).
func ForSocket(path string) *Notifier {
	if path == "" {
		return &Notifier{}
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:]
	}
	return &Notifier{addr: &net.UnixAddr{Name: path, Net: "unixgram"}}
}

// Enabled reports whether n sends anything.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends the lines, each KEY=VALUE, as one datagram.
func (n *Notifier) Notify(lines ...string) error {
	if !n.Enabled() {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready says the service is up, with a status line.
func (n *Notifier) Ready(status string) error { return n.Notify("READY=1", "STATUS="+status) }

// Status sets the status line.
func (n *Notifier) Status(status string) error { return n.Notify("STATUS=" + status) }

// Reloading says a reload has begun; Ready says it ended. The message
// carries CLOCK_MONOTONIC in microseconds, as systemd 253 and later want
// it, where the OS has that clock.
func (n *Notifier) Reloading(status string) error {
	lines := []string{"RELOADING=1"}
	if us, ok := monotonicUsec(); ok {
		lines = append(lines, fmt.Sprintf("MONOTONIC_USEC=%d", us))
	}
	return n.Notify(append(lines, "STATUS="+status)...)
}

// Stopping says the service is stopping, with a status line.
func (n *Notifier) Stopping(status string) error { return n.Notify("STOPPING=1", "STATUS="+status) }
