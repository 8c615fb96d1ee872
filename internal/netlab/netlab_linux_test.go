package netlab_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/warrenvpn/warren/internal/netlab"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

func TestNamespace(t *testing.T) {
	ns := netlabtest.NewNamespace(t)
	if !strings.HasPrefix(ns.Name(), "tTestNamespace-") {
		t.Errorf("Name() = %q, want prefix tTestNamespace-", ns.Name())
	}
	path := filepath.Join("/run/netns", ns.Name())
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("namespace not bind-mounted: %v", err)
	}

	lo, err := ns.Handle().LinkByName("lo")
	if err != nil {
		t.Fatalf("LinkByName(lo): %v", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo is down")
	}

	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	err = ns.Do(func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if cur.Equal(host) {
			t.Errorf("Do ran in the host namespace")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}

	out, err := ns.Command(context.Background(), "ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("Command: %v: %s", err, out)
	}
	if n := bytes.Count(out, []byte("\n")); n != 1 || !bytes.Contains(out, []byte("lo:")) {
		t.Errorf("links in a new namespace = %q, want only lo", out)
	}

	if err := ns.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after Close, stat %s: %v, want not exist", path, err)
	}
	if err := ns.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseKillsProcesses(t *testing.T) {
	ns := netlabtest.NewNamespace(t)
	// The shell reports once it runs inside the namespace.
	cmd := ns.Command(context.Background(), "sh", "-c", "echo ready; exec sleep 60")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("read readiness: %q, %v", line, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	if err := ns.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-waited:
		if err == nil {
			t.Errorf("sleep exited cleanly, want killed")
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("process still running after Close")
	}
}

func TestLab(t *testing.T) {
	for _, mtu := range []int{0, 1280, 9000} {
		t.Run(fmt.Sprintf("mtu%d", mtu), func(t *testing.T) {
			l := netlabtest.NewLab(t, mtu)
			want := mtu
			if want == 0 {
				want = netlab.DefaultMTU
			}
			for _, end := range []struct {
				ns   *netlab.Namespace
				link string
				addr []netip.Prefix
			}{{l.A, l.LinkA, []netip.Prefix{l.AddrA, l.Addr6A}}, {l.B, l.LinkB, []netip.Prefix{l.AddrB, l.Addr6B}}} {
				link, err := end.ns.Handle().LinkByName(end.link)
				if err != nil {
					t.Fatalf("LinkByName(%s): %v", end.link, err)
				}
				if got := link.Attrs().MTU; got != want {
					t.Errorf("%s MTU = %d, want %d", end.link, got, want)
				}
			}
			for _, dst := range []netip.Prefix{l.AddrB, l.Addr6B} {
				udpEcho(t, l.A, l.B, dst.Addr())
			}
			for _, dst := range []netip.Prefix{l.AddrA, l.Addr6A} {
				udpEcho(t, l.B, l.A, dst.Addr())
			}
		})
	}
}

// udpEcho sends a datagram from a socket in from to one in to, listening on
// addr, and checks that it arrives.
func udpEcho(t *testing.T, from, to *netlab.Namespace, addr netip.Addr) {
	t.Helper()
	var server, client *net.UDPConn
	err := to.Do(func() (err error) {
		server, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, to.Name(), err)
	}
	defer server.Close()
	err = from.Do(func() (err error) {
		client, err = net.DialUDP("udp", nil, server.LocalAddr().(*net.UDPAddr))
		return err
	})
	if err != nil {
		t.Fatalf("dial %s from %s: %v", server.LocalAddr(), from.Name(), err)
	}
	defer client.Close()
	msg := []byte("hello " + addr.String())
	if _, err := client.Write(msg); err != nil {
		t.Fatalf("write to %s: %v", addr, err)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := server.Read(buf)
	if err != nil {
		t.Fatalf("read on %s: %v", addr, err)
	}
	if !bytes.Equal(buf[:n], msg) {
		t.Errorf("received %q, want %q", buf[:n], msg)
	}
}
