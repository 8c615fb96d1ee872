// Package meshtest runs a real etcd server for the mesh's tests: Debian's
// etcd binary (package etcd-server) on an address the test chooses, with
// TLS certificates made at test time if asked. It is imported by tests
// only.
package meshtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// readyTimeout bounds the wait for a started server to answer.
const readyTimeout = 15 * time.Second

// Options choose where and how the server runs.
type Options struct {
	// Addr is the address to listen on; default 127.0.0.1.
	Addr netip.Addr
	// Port is the client port; 0 picks a free one (on Addr, from the
	// calling namespace: set it when Command runs etcd elsewhere).
	Port, PeerPort int
	// TLS makes the server require client certificates signed by a CA made
	// for the test.
	TLS bool
	// Command returns the command that runs etcd with args; default
	// exec.Command. Tests that run etcd in a namespace pass one that
	// enters it.
	Command func(name string, args ...string) *exec.Cmd
	// Dial connects to the server's client address from wherever the
	// server runs (a namespace's Do, for one in a namespace). When set,
	// the test's own clients (Client, and the readiness check) go through
	// a proxy on 127.0.0.1 that dials with it.
	Dial func(network, addr string) (net.Conn, error)
}

// Etcd is a running etcd server. The test's cleanup kills it and removes its
// data.
type Etcd struct {
	opts     Options
	dir      string
	Endpoint string // client URL: http:// or https://
	// CA, Cert and Key are the files of the test CA and of a client
	// certificate it signed; "" without TLS.
	CA, Cert, Key string

	proxy string // the test clients' endpoint: Endpoint, or the proxy's URL

	mu  sync.Mutex
	cmd *exec.Cmd     // nil when stopped
	out *lockedBuffer // the server's output, shown when the test fails
}

// Require skips t if etcd is not installed, and fails it under CI=true.
func Require(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("etcd not installed (CI=true: a missing tool is a failure); apt-get install etcd-server")
		}
		t.Skip("etcd not installed (apt-get install etcd-server)")
	}
	return p
}

// Start runs an etcd server for t and waits until it answers.
func Start(t testing.TB, opts Options) *Etcd {
	t.Helper()
	Require(t)
	if !opts.Addr.IsValid() {
		opts.Addr = netip.MustParseAddr("127.0.0.1")
	}
	if opts.Command == nil {
		opts.Command = exec.Command
	}
	if opts.Port == 0 {
		opts.Port = freePort(t, opts.Addr)
	}
	if opts.PeerPort == 0 {
		opts.PeerPort = freePort(t, opts.Addr)
	}
	e := &Etcd{opts: opts, dir: tempDir(t), out: &lockedBuffer{}}
	scheme := "http"
	if opts.TLS {
		scheme = "https"
		e.makeCerts(t)
	}
	e.Endpoint = scheme + "://" + net.JoinHostPort(opts.Addr.String(), strconv.Itoa(opts.Port))
	e.proxy = e.Endpoint
	if opts.Dial != nil {
		e.proxy = scheme + "://" + startProxy(t, func() (net.Conn, error) {
			return opts.Dial("tcp", net.JoinHostPort(opts.Addr.String(), strconv.Itoa(opts.Port)))
		})
	}
	t.Cleanup(func() {
		e.Kill()
		if t.Failed() {
			t.Logf("etcd output:\n%s", e.out.String())
		}
	})
	if err := e.Restart(); err != nil {
		t.Fatal(err)
	}
	return e
}

// tempDir is t.TempDir on /dev/shm where there is one: etcd syncs its log
// on every write, which on a disk dominates the tests' time.
func tempDir(t testing.TB) string {
	d, err := os.MkdirTemp("/dev/shm", "meshtest-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Restart starts the server (again, after Stop or Kill, on the same data)
// and waits until it answers.
func (e *Etcd) Restart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil {
		return fmt.Errorf("etcd already running")
	}
	host := e.opts.Addr.String()
	if e.opts.Addr.Is6() {
		host = "[" + host + "]"
	}
	peer := fmt.Sprintf("http://%s:%d", host, e.opts.PeerPort)
	args := []string{
		"--name", "meshtest",
		"--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", e.Endpoint,
		"--advertise-client-urls", e.Endpoint,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "meshtest=" + peer,
		"--log-level", "warn",
	}
	if e.opts.TLS {
		args = append(args,
			"--cert-file", filepath.Join(e.dir, "server.crt"),
			"--key-file", filepath.Join(e.dir, "server.key"),
			"--trusted-ca-file", e.CA,
			"--client-cert-auth")
	}
	cmd := e.opts.Command("etcd", args...)
	cmd.Stdout, cmd.Stderr = e.out, e.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	e.cmd = cmd
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c, err := e.clientLocked()
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Get(sctx, "/health-probe")
		scancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("etcd at %s not ready after %v: %v\n%s", e.Endpoint, readyTimeout, err, e.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the server with SIGTERM and waits for it.
func (e *Etcd) Stop() { e.signal(syscall.SIGTERM) }

// Kill ends the server with SIGKILL and waits for it. It does nothing if
// the server is not running.
func (e *Etcd) Kill() { e.signal(syscall.SIGKILL) }

func (e *Etcd) signal(sig syscall.Signal) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Signal(sig)
	e.cmd.Wait()
	e.cmd = nil
}

// Client returns a client of the server; the test's cleanup closes it.
func (e *Etcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.clientLocked()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (e *Etcd) clientLocked() (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: []string{e.proxy}, Logger: zap.NewNop(), DialTimeout: 5 * time.Second}
	if e.opts.TLS {
		cert, err := tls.LoadX509KeyPair(e.Cert, e.Key)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		b, err := os.ReadFile(e.CA)
		if err != nil {
			return nil, err
		}
		pool.AppendCertsFromPEM(b)
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool}
	}
	return clientv3.New(cfg)
}

// MeshSection returns the connection keys of a [Mesh] section for this
// server.
func (e *Etcd) MeshSection() string {
	if !e.opts.TLS {
		return "Endpoints = " + e.Endpoint + "\nInsecure = true\n"
	}
	return fmt.Sprintf("Endpoints = %s\nCAFile = %s\nCertFile = %s\nKeyFile = %s\n", e.Endpoint, e.CA, e.Cert, e.Key)
}

// makeCerts writes a CA, a server certificate for the server's address
// and a client certificate, all ECDSA P-256, valid for a day.
func (e *Etcd) makeCerts(t testing.TB) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "meshtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	e.CA = filepath.Join(e.dir, "ca.crt")
	writePEM(t, e.CA, "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{e.opts.Addr.AsSlice(), net.IPv4(127, 0, 0, 1)}, // the proxy's too
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(e.dir, name+".crt"), "CERTIFICATE", der)
		writePEM(t, filepath.Join(e.dir, name+".key"), "EC PRIVATE KEY", kb)
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth)
	leaf("client", 3, x509.ExtKeyUsageClientAuth)
	e.Cert, e.Key = filepath.Join(e.dir, "client.crt"), filepath.Join(e.dir, "client.key")
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startProxy listens on 127.0.0.1 and connects every connection it
// accepts through dial; it stops in t's cleanup. It returns its address.
func startProxy(t testing.TB, dial func() (net.Conn, error)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := dial()
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Go(func() { io.Copy(out, in); out.Close() })
			wg.Go(func() { io.Copy(in, out); in.Close() })
		}
	})
	return l.Addr().String()
}

// freePort returns a TCP port free on addr now.
func freePort(t testing.TB, addr netip.Addr) int {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("free port on %v: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a process's output for a failing test's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
