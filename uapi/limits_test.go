package uapi_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
	"github.com/warrenvpn/warren/uapi/uapitest"
)

// pipeListener is a net.Listener whose connections are in-memory pipes
// made by dial, and whose Accept errors are injected.
type pipeListener struct {
	conns  chan net.Conn
	errs   chan error
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), errs: make(chan error, 16), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }

// dial returns the client end of a new connection once Serve accepted it.
func (l *pipeListener) dial(t testing.TB) net.Conn {
	t.Helper()
	c, s := net.Pipe()
	select {
	case l.conns <- s:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve accepts no connection")
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serve runs srv on a new pipeListener until the test ends.
func serve(t testing.TB, srv *uapi.Server) *pipeListener {
	t.Helper()
	l := newPipeListener()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		l.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l
}

// request sends req on c and returns the reply up to its errno line. The
// deadline is a safety net for a wedged server, not a wait for an event.
func request(t testing.TB, c net.Conn, req string) (string, error) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if strings.HasPrefix(line, "errno=") {
			end, err := br.ReadString('\n')
			b.WriteString(end)
			return b.String(), err
		}
	}
}

// TestC12UnreadGet covers C12: a client that sends get=1 and never reads
// the reply holds no lock, so a later set and get on other connections
// complete.
func TestC12UnreadGet(t *testing.T) {
	dev := &uapitest.Device{}
	l := serve(t, uapi.NewServer(dev, nil))
	setup := l.dial(t)
	var peers strings.Builder
	peers.WriteString("set=1\nprivate_key=" + hexA + "\n")
	for range 200 {
		peers.WriteString("public_key=" + hexB + "\nallowed_ip=198.18.0.1/32\n")
	}
	peers.WriteString("\n")
	if got, err := request(t, setup, peers.String()); err != nil || got != "errno=0\n\n" {
		t.Fatalf("set = %q, %v", got, err)
	}

	stuck := l.dial(t)
	if _, err := io.WriteString(stuck, "get=1\n\n"); err != nil {
		t.Fatal(err)
	}
	// stuck never reads: the server blocks writing its reply.
	c := l.dial(t)
	if got, err := request(t, c, "set=1\nlisten_port=51821\n\n"); err != nil || got != "errno=0\n\n" {
		t.Fatalf("set after an unread get = %q, %v", got, err)
	}
	if got, err := request(t, c, "get=1\n\n"); err != nil || !strings.Contains(got, "listen_port=51821\n") {
		t.Fatalf("get after an unread get = %q, %v", got, err)
	}
}

// TestC13Deadlines covers C13: a connection that sends nothing is closed
// after the idle timeout, one that keeps talking after its total timeout,
// and one whose reply is not read after the idle timeout.
func TestC13Deadlines(t *testing.T) {
	srv := uapi.NewServer(&uapitest.Device{}, nil)
	srv.IdleTimeout = 50 * time.Millisecond
	srv.ConnTimeout = 300 * time.Millisecond
	l := serve(t, srv)

	idle := l.dial(t)
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection: Read = %d, %v, want EOF", n, err)
	}

	busy := l.dial(t)
	start := time.Now()
	var err error
	for err == nil && time.Since(start) < 10*time.Second {
		_, err = request(t, busy, "get=1\n\n")
	}
	if err == nil {
		t.Error("a busy connection outlived its total timeout")
	}

	stuck := l.dial(t)
	io.WriteString(stuck, "get=1\n\n")
	stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	// The reply is refused after 50 ms; what is read then is the end.
	for {
		if _, err := stuck.Read(make([]byte, 1)); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("unread reply: %v, want EOF", err)
			}
			break
		}
	}
}

// TestC13ConnectionCap covers C13's cap: beyond MaxConns idle connections,
// a new one is closed at once and counted, and the open ones still work.
func TestC13ConnectionCap(t *testing.T) {
	srv := uapi.NewServer(&uapitest.Device{}, nil)
	srv.MaxConns = 4
	l := serve(t, srv)
	var open []net.Conn
	for range 4 {
		open = append(open, l.dial(t))
	}
	for range 3 {
		c := l.dial(t)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("connection over the cap: Read = %d, %v, want EOF", n, err)
		}
	}
	if got := srv.Refused(); got != 3 {
		t.Errorf("Refused() = %d, want 3", got)
	}
	if got, err := request(t, open[3], "get=1\n\n"); err != nil || got != "errno=0\n\n" {
		t.Errorf("get on an open connection = %q, %v", got, err)
	}
	// get=warren (warren show) and so the metrics carry the count.
	if got, err := request(t, open[3], "get=warren\n\n"); err != nil || !strings.Contains(got, "warren_control_refused_total=3\n") {
		t.Errorf("get=warren = %q, %v; want warren_control_refused_total=3", got, err)
	}
}

// TestC13TenThousandConnections: 10,000 clients connect at once and none
// closes; the server keeps DefaultMaxConns of them, refuses the rest at
// once, counts them, and still answers on a connection it kept.
func TestC13TenThousandConnections(t *testing.T) {
	srv := uapi.NewServer(&uapitest.Device{}, nil)
	l := serve(t, srv)
	const clients = 10_000
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = l.dial(t)
	}
	// Each refused connection is closed by the server: its read ends.
	refused := 0
	var kept []net.Conn
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		switch {
		case err == io.EOF:
			refused++
		case errors.Is(err, os.ErrDeadlineExceeded):
			kept = append(kept, c)
		default:
			t.Fatalf("read: %v", err)
		}
		c.SetReadDeadline(time.Time{})
	}
	if len(kept) != uapi.DefaultMaxConns || refused != clients-uapi.DefaultMaxConns {
		t.Errorf("%d connections kept and %d refused, want %d and %d", len(kept), refused, uapi.DefaultMaxConns, clients-uapi.DefaultMaxConns)
	}
	if got := srv.Refused(); got != clients-uapi.DefaultMaxConns {
		t.Errorf("Refused() = %d, want %d", got, clients-uapi.DefaultMaxConns)
	}
	if got, err := request(t, kept[0], "get=1\n\n"); err != nil || got != "errno=0\n\n" {
		t.Errorf("get on a kept connection = %q, %v", got, err)
	}
}

// TestC14AcceptErrors covers C14: Accept failing with EMFILE is logged and
// retried, and the next connection is served; a lasting error ends Serve.
func TestC14AcceptErrors(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	l := serve(t, uapi.NewServer(&uapitest.Device{}, log))
	emfile := &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	for range 3 {
		l.errs <- emfile
	}
	c := l.dial(t)
	if got, err := request(t, c, "get=1\n\n"); err != nil || got != "errno=0\n\n" {
		t.Fatalf("get after EMFILE = %q, %v", got, err)
	}
	mu.Lock()
	n := strings.Count(logs.String(), "uapi accept failed")
	mu.Unlock()
	if n != 3 {
		t.Errorf("%d log lines for 3 failed accepts:\n%s", n, logs.String())
	}

	l2 := newPipeListener()
	l2.errs <- errors.New("listener broken")
	if err := uapi.NewServer(&uapitest.Device{}, nil).Serve(l2); err == nil {
		t.Error("Serve returned nil after a lasting Accept error")
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestC15SetBounded covers C15: a set body over MaxSetSize is refused
// with errno=-5, changes nothing, and the connection is closed.
func TestC15SetBounded(t *testing.T) {
	dev := &uapitest.Device{}
	line := "public_key=" + hexB + "\n"
	var req strings.Builder
	req.WriteString("set=1\n")
	for req.Len() <= uapi.MaxSetSize+len(line) {
		req.WriteString(line)
	}
	req.WriteString("\nget=1\n\n")
	if got := exchange(t, dev, req.String()); got != "errno=-5\n\n" {
		t.Errorf("oversized set: %q, want errno=-5 and the end", got)
	}
	if got := exchange(t, dev, "get=1\n\n"); got != "errno=0\n\n" {
		t.Errorf("after an oversized set: %q, want nothing applied", got)
	}
}

// keepingDevice is a Device that keeps what it was given and returns a
// State it keeps too, as a careless engine could.
type keepingDevice struct {
	change *uapi.Change
	state  *uapi.State
}

func (d *keepingDevice) Apply(c *uapi.Change) error { d.change = c; return nil }
func (d *keepingDevice) State() (*uapi.State, error) {
	var err error
	d.state = &uapi.State{}
	d.state.PrivateKey, err = crypto.ParsePrivateKeyHex(hexA)
	return d.state, err
}

// TestP18ServerWipes covers P18 in the control server: the keys of a set
// request are zeroed once Apply returned, and those of a get reply once it
// is written.
func TestP18ServerWipes(t *testing.T) {
	d := &keepingDevice{}
	if got := exchange(t, d, "set=1\nprivate_key="+hexA+"\npublic_key="+hexB+"\npreshared_key="+hexC+"\n\nget=1\n\n"); !strings.HasPrefix(got, "errno=0\n\nprivate_key="+hexA) {
		t.Fatalf("replies %q", got)
	}
	if !d.change.PrivateKey.IsZero() || !d.change.Peers[0].PresharedKey.IsZero() {
		t.Error("the keys of the set request survive Apply")
	}
	if !d.state.PrivateKey.IsZero() {
		t.Error("the private key of the get reply survives the reply")
	}
}
