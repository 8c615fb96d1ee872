package mesh

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/mesh/meshtest"
)

// waitTimeout bounds every wait for the mesh to converge in these tests.
const waitTimeout = 15 * time.Second

// fakeApplier records the peers a Mesh applies.
type fakeApplier struct {
	mu      sync.Mutex
	peers   map[wgcrypto.PublicKey]config.Peer
	diffs   []Diff
	changed chan struct{} // capacity 1
	fail    error         // returned by Apply while set
}

func newFakeApplier() *fakeApplier {
	return &fakeApplier{peers: make(map[wgcrypto.PublicKey]config.Peer), changed: make(chan struct{}, 1)}
}

func (f *fakeApplier) Apply(_ context.Context, d Diff) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	for _, k := range d.Remove {
		if _, ok := f.peers[k]; !ok {
			return fmt.Errorf("remove of unknown peer %s", k)
		}
		delete(f.peers, k)
	}
	for _, p := range d.Set {
		f.peers[p.PublicKey] = p
	}
	f.diffs = append(f.diffs, d)
	select {
	case f.changed <- struct{}{}:
	default:
	}
	return nil
}

// names returns the allowed IPs of the applied peers, sorted, as text.
func (f *fakeApplier) prefixes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.peers {
		for _, a := range p.AllowedIPs {
			out = append(out, a.String())
		}
	}
	slices.Sort(out)
	return out
}

// waitPrefixes waits until the applied peers' allowed IPs are want.
func (f *fakeApplier) waitPrefixes(t *testing.T, who string, want ...string) {
	t.Helper()
	slices.Sort(want)
	deadline := time.After(waitTimeout)
	for {
		got := f.prefixes()
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("%s: peers' allowed IPs = %v, want %v", who, got, want)
		}
	}
}

// testNode is one Mesh under test.
type testNode struct {
	m    *Mesh
	app  *fakeApplier
	key  wgcrypto.PrivateKey
	stop context.CancelFunc
	done chan error
}

// nodeFile returns a node's file for etcd e.
func nodeFile(key wgcrypto.PrivateKey, e *meshtest.Etcd, name, addr, extra string) string {
	return fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = %s/24\n\n[Mesh]\n%sNetwork = t\nName = %s\nAdvertise = 198.18.0.1:51820\nLeaseTTL = 2\n%s",
		key, addr, e.MeshSection(), name, extra)
}

func newKey(t testing.TB) wgcrypto.PrivateKey {
	k, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startNode runs a Mesh for the node file text until the test ends.
func startNode(t *testing.T, text string, key wgcrypto.PrivateKey, cache string) *testNode {
	t.Helper()
	ifc, c, err := Parse("/etc/wireguard/wm0.conf", strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	c.CacheFile = cache
	n := &testNode{app: newFakeApplier(), key: key, done: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n.m, err = New(ifc, c, Options{Logger: log, Applier: n.app, ListenPort: 51820})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go func() { n.done <- n.m.Run(ctx) }()
	t.Cleanup(func() { n.close(t) })
	return n
}

// close stops the node cleanly and returns what Run returned.
func (n *testNode) close(t *testing.T) error {
	n.stop()
	select {
	case err := <-n.done:
		n.done <- err
		return err
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after its context ended")
		return nil
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestMeshEtcd runs nodes against a real etcd with TLS: they find each
// other, a clean stop removes a node everywhere, a garbage document and a
// foreign one are ignored, a conflicting name or prefix is refused, an
// expired lease drops its node, and a restart of etcd loses nothing.
func TestMeshEtcd(t *testing.T) {
	leakcheck.Check(t)
	e := meshtest.Start(t, meshtest.Options{TLS: true})
	top := t // nodes that outlive a subtest
	dir := t.TempDir()
	keys := []wgcrypto.PrivateKey{newKey(t), newKey(t), newKey(t)}
	a := startNode(t, nodeFile(keys[0], e, "a", "198.18.100.1", ""), keys[0], filepath.Join(dir, "a.mesh"))
	b := startNode(t, nodeFile(keys[1], e, "b", "198.18.100.2", ""), keys[1], filepath.Join(dir, "b.mesh"))
	a.app.waitPrefixes(t, "a", "198.18.100.2/32")
	b.app.waitPrefixes(t, "b", "198.18.100.1/32")

	c := startNode(t, nodeFile(keys[2], e, "c", "198.18.100.3", "AllowedIPs = 198.18.100.3/32, 198.18.120.0/24\n"), keys[2], filepath.Join(dir, "c.mesh"))
	a.app.waitPrefixes(t, "a", "198.18.100.2/32", "198.18.100.3/32", "198.18.120.0/24")
	b.app.waitPrefixes(t, "b", "198.18.100.1/32", "198.18.100.3/32", "198.18.120.0/24")

	t.Run("conflicts refused", func(t *testing.T) {
		for _, tc := range []struct{ name, file, want string }{
			{"name", nodeFile(newKey(t), e, "b", "198.18.100.9", ""), `name "b" is taken`},
			{"prefix", nodeFile(newKey(t), e, "d", "198.18.100.9", "AllowedIPs = 198.18.120.128/25\n"), `allowed IP 198.18.120.128/25 overlaps 198.18.120.0/24 of node "c"`},
		} {
			k := newKey(t)
			n := startNode(t, tc.file, k, filepath.Join(dir, tc.name+".mesh"))
			select {
			case err := <-n.done:
				n.done <- err
				if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: Run = %v, want ErrConflict with %q", tc.name, err, tc.want)
				}
			case <-time.After(waitTimeout):
				t.Fatalf("%s: Run did not refuse the node", tc.name)
			}
		}
	})

	cli := e.Client(t)
	ctx := context.Background()
	t.Run("garbage ignored", func(t *testing.T) {
		junkKey := newKey(t).PublicKey()
		for _, v := range []string{
			"not json",
			`{"v":2,"name":"x","publicKey":"` + junkKey.String() + `","allowedIPs":["198.18.121.0/24"],"mode":"tun"}`,
			`{"v":1,"name":"x","publicKey":"` + newKey(t).PublicKey().String() + `","allowedIPs":["198.18.121.0/24"],"mode":"tun"}`,
		} {
			if _, err := cli.Put(ctx, "/warren/t/nodes/"+keyElement(junkKey), v); err != nil {
				t.Fatal(err)
			}
		}
		// b's document turned to garbage keeps b's last valid one.
		if _, err := cli.Put(ctx, "/warren/t/nodes/"+keyElement(keys[1].PublicKey()), "{garbage"); err != nil {
			t.Fatal(err)
		}
		// A valid write after the garbage shows that the watch went on.
		k := newKey(t)
		startNode(top, nodeFile(k, e, "d", "198.18.100.4", ""), k, filepath.Join(dir, "d.mesh"))
		a.app.waitPrefixes(t, "a", "198.18.100.2/32", "198.18.100.3/32", "198.18.120.0/24", "198.18.100.4/32")
		if s := a.m.Status(); s.Errors < 4 || s.LastError == "" {
			t.Errorf("a's status after garbage = %+v, want at least 4 errors counted", s)
		}
		cli.Delete(ctx, "/warren/t/nodes/"+keyElement(junkKey))
	})

	t.Run("failed apply retried", func(t *testing.T) {
		a.app.mu.Lock()
		a.app.fail = errors.New("injected")
		a.app.mu.Unlock()
		before := a.m.Status().Errors
		k := newKey(t)
		startNode(top, nodeFile(k, e, "g", "198.18.100.7", ""), k, filepath.Join(dir, "g.mesh"))
		b.app.waitPrefixes(t, "b", "198.18.100.1/32", "198.18.100.3/32", "198.18.120.0/24", "198.18.100.4/32", "198.18.100.7/32")
		deadline := time.Now().Add(waitTimeout)
		for a.m.Status().Errors == before {
			if time.Now().After(deadline) {
				t.Fatal("a's failing Applier was not reported")
			}
			time.Sleep(10 * time.Millisecond)
		}
		a.app.mu.Lock()
		a.app.fail = nil
		a.app.mu.Unlock()
		a.app.waitPrefixes(t, "a after the Applier recovered", "198.18.100.2/32", "198.18.100.3/32", "198.18.120.0/24", "198.18.100.4/32", "198.18.100.7/32")
	})

	t.Run("clean stop removes", func(t *testing.T) {
		if err := c.close(t); err != nil {
			t.Fatalf("c: Run = %v", err)
		}
		a.app.waitPrefixes(t, "a", "198.18.100.2/32", "198.18.100.4/32", "198.18.100.7/32")
		b.app.waitPrefixes(t, "b", "198.18.100.1/32", "198.18.100.4/32", "198.18.100.7/32")
	})

	t.Run("lease expiry removes", func(t *testing.T) {
		k := newKey(t).PublicKey()
		lease, err := cli.Grant(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		n := Node{Name: "ghost", PublicKey: k, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("198.18.100.66/32")}, Mode: config.ModeTUN}
		doc, _ := n.Marshal()
		if _, err := cli.Put(ctx, "/warren/t/nodes/"+keyElement(k), string(doc), clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
		a.app.waitPrefixes(t, "a", "198.18.100.2/32", "198.18.100.4/32", "198.18.100.7/32", "198.18.100.66/32")
		start := time.Now()
		a.app.waitPrefixes(t, "a", "198.18.100.2/32", "198.18.100.4/32", "198.18.100.7/32")
		t.Logf("an unrenewed node with a 2 s lease dropped after %v", time.Since(start).Round(10*time.Millisecond))
	})

	t.Run("etcd restart", func(t *testing.T) {
		e.Stop()
		time.Sleep(3 * time.Second) // longer than the lease TTL: the nodes' keep-alives fail
		if s := a.m.Status(); s.Connected {
			t.Errorf("a's status with etcd down = %+v, want not connected", s)
		}
		if got := a.app.prefixes(); len(got) != 3 {
			t.Errorf("a lost peers while etcd was down: %v", got)
		}
		if err := e.Restart(); err != nil {
			t.Fatal(err)
		}
		k := newKey(t)
		startNode(top, nodeFile(k, e, "f", "198.18.100.6", ""), k, filepath.Join(dir, "f.mesh"))
		a.app.waitPrefixes(t, "a", "198.18.100.2/32", "198.18.100.4/32", "198.18.100.7/32", "198.18.100.6/32")
		b.app.waitPrefixes(t, "b", "198.18.100.1/32", "198.18.100.4/32", "198.18.100.7/32", "198.18.100.6/32")
	})

	t.Run("offline start from cache", func(t *testing.T) {
		if err := a.close(t); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, "a.mesh"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("cache mode = %v, want 0600", fi.Mode().Perm())
		}
		e.Kill()
		a2 := startNode(t, nodeFile(keys[0], e, "a", "198.18.100.1", ""), keys[0], filepath.Join(dir, "a.mesh"))
		a2.app.waitPrefixes(t, "a restarted offline", "198.18.100.2/32", "198.18.100.4/32", "198.18.100.7/32", "198.18.100.6/32")
	})
}
