package mesh

// A running node does three things at once, each on its own goroutine:
//  1. publishLoop (the caller of Run) publishes this node's document under
//     a lease and keeps the lease alive; when the keep-alive stops (etcd
//     unreachable for longer than the TTL) it waits for etcd with backoff,
//     keeps the lease if etcd still has it and publishes again only if it
//     expired. On a clean stop it revokes the lease, deleting the key.
//     applyLoop starts only once the first publication was not refused.
//  2. watchLoop lists the network's nodes, then watches from the next
//     revision; on compaction, a cancelled watch or a failed list it lists
//     again. Each response updates Mesh.nodes under Mesh.mu and kicks
//     applyLoop (a channel of one: kicks coalesce).
//  3. applyLoop computes the peers from Mesh.nodes, hands the difference
//     from what it applied last to the Applier, and writes the cache.
// While etcd is unreachable nothing changes: the tunnel keeps the peers it
// has, and the client library reconnects on its own (gRPC's delay bounded
// by leaseRetry); the watch resumes at the revision it had reached, or
// lists again if that revision was compacted meanwhile.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
)

// Tuning.
const (
	opTimeout      = 5 * time.Second        // one etcd request
	revokeTimeout  = 2 * time.Second        // the lease revocation on a clean stop
	minBackoff     = 200 * time.Millisecond // first retry after a failure
	maxBackoff     = 5 * time.Second        // retries never wait longer
	cacheInterval  = time.Second            // the cache is written at most this often
	publishRetries = 10                     // publish transactions lost to concurrent changes
)

// ErrConflict marks a publication the mesh refused: another node has this
// node's name, or serves a prefix overlapping one of this node's.
var ErrConflict = errors.New("refused by the mesh")

// Options are what a Mesh needs besides its config.
type Options struct {
	// Logger receives the mesh's logs; nil discards them.
	Logger *slog.Logger
	// Applier applies peer changes to the tunnel. Required.
	Applier Applier
	// ListenPort is the tunnel's UDP port, published with a detected
	// endpoint.
	ListenPort uint16
	// Static are peers of the node's own file; mesh nodes with the same
	// public key or an overlapping prefix are skipped.
	Static []config.Peer
}

// Status is a snapshot of a Mesh's state.
type Status struct {
	Connected bool   // the lease is alive: etcd answered within the TTL
	Revision  int64  // the store revision seen last
	Nodes     int    // nodes known, valid or not taken, this one included
	Peers     int    // peers applied
	Events    uint64 // store events received
	Errors    uint64 // failed requests, malformed documents, failed applies
	LastError string // "" if none yet
}

// Mesh is one node of a mesh: it publishes the node and keeps the tunnel's
// peers in line with the store. Run it once.
type Mesh struct {
	cfg     *Config
	self    Node
	static  []config.Peer
	log     *slog.Logger
	applier Applier
	client  *clientv3.Client
	prefix  string // nodesPrefix(cfg)
	key     string // this node's key

	mu     sync.Mutex // guards nodes, status, logged and dirty
	nodes  map[wgcrypto.PublicKey]*entry
	status Status
	logged map[wgcrypto.PublicKey]int64 // mod revision of the last document of a key logged as bad or skipped
	dirty  bool                         // nodes changed since the cache was written

	kick chan struct{} // capacity 1: nodes changed
	// settled is closed once the first publication succeeded or failed for
	// a reason other than a conflict (etcd unreachable): applyLoop waits for
	// it, so that a node the mesh refuses never takes peers.
	settled chan struct{}
	wg      sync.WaitGroup
}

// New prepares the node described by ifc and c. It detects the advertised
// endpoint if asked to and creates the etcd client, which connects lazily:
// New does not wait for etcd.
func New(ifc *config.Config, c *Config, opts Options) (*Mesh, error) {
	if opts.Applier == nil {
		return nil, errors.New("mesh: no Applier")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	self := Node{
		Name:       c.Name,
		PublicKey:  ifc.Interface.PrivateKey.PublicKey(),
		Endpoints:  c.Advertise,
		AllowedIPs: c.AllowedIPs,
		Labels:     c.Labels,
		Mode:       ifc.Interface.Mode,
	}
	if c.Detect {
		ep, err := detectEndpoint(c.Endpoints, opts.ListenPort)
		if err != nil {
			return nil, err
		}
		self.Endpoints = []netip.AddrPort{ep}
	}
	tlsConfig, err := clientTLS(c)
	if err != nil {
		return nil, err
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:            c.Endpoints,
		TLS:                  tlsConfig,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               zap.NewNop(),
		// gRPC's own reconnect delay grows to 120 s; a node must be back
		// well within the lease TTL of etcd's return, or its restored
		// lease expires and every node drops it.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: minBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: leaseRetry(c)},
			MinConnectTimeout: opTimeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return &Mesh{
		cfg:     c,
		self:    self,
		static:  opts.Static,
		log:     log,
		applier: opts.Applier,
		client:  client,
		prefix:  nodesPrefix(c),
		key:     nodeKey(c, self.PublicKey),
		nodes:   make(map[wgcrypto.PublicKey]*entry),
		logged:  make(map[wgcrypto.PublicKey]int64),
		kick:    make(chan struct{}, 1),
		settled: make(chan struct{}),
	}, nil
}

// Self returns the node as it publishes itself.
func (m *Mesh) Self() Node { return m.self }

// Status returns the mesh's current state.
func (m *Mesh) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Nodes = len(m.nodes)
	return s
}

// Run publishes the node and applies the store's changes until ctx is done
// (then it deletes the node's key and returns nil) or the mesh refuses the
// node (an error matching ErrConflict). It starts from the cached nodes, so
// a node that starts while etcd is down gets its last known peers. Run
// closes the etcd client before it returns.
func (m *Mesh) Run(ctx context.Context) error {
	defer m.client.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := m.loadCache(); err != nil {
		m.log.Warn("mesh cache not used", "file", m.cfg.CacheFile, "err", err)
	}
	m.wg.Go(func() { m.applyLoop(ctx) })
	m.wg.Go(func() { m.watchLoop(ctx) })
	err := m.publishLoop(ctx)
	cancel()
	m.wg.Wait()
	return err
}

// publishLoop is step 1 of the flow. When the lease's keep-alive stops
// (etcd unreachable), it waits for etcd and keeps the same lease if it is
// still there: etcd restores leases with a fresh TTL when it restarts, so a
// node that checks back within the TTL keeps its key and nobody drops it.
// Only a lease that expired is replaced, by publishing again.
func (m *Mesh) publishLoop(ctx context.Context) error {
	b := backoff{max: leaseRetry(m.cfg)}
	settle := sync.OnceFunc(func() { close(m.settled) })
	var lease clientv3.LeaseID // 0: not published
	for {
		if lease == 0 {
			l, err := m.publish(ctx)
			switch {
			case errors.Is(err, ErrConflict):
				return err
			case ctx.Err() != nil:
				if l != 0 {
					m.revoke(ctx, l)
				}
				return nil
			case err != nil:
				m.fail("publish", err)
				settle()
				if !b.wait(ctx) {
					return nil
				}
				continue
			}
			lease = l
			m.log.Info("published", "key", m.key, "lease_ttl", m.cfg.LeaseTTL)
		}
		m.setConnected(true)
		settle()
		b.reset()
		ka, err := m.client.KeepAlive(ctx, lease)
		if err == nil {
			for range ka {
				m.setConnected(true)
			}
		}
		if ctx.Err() != nil {
			m.revoke(ctx, lease)
			return nil
		}
		m.setConnected(false)
		m.fail("lease", fmt.Errorf("keep-alive of lease %x stopped", int64(lease)))
		for {
			if !b.wait(ctx) {
				m.revoke(ctx, lease)
				return nil
			}
			octx, cancel := context.WithTimeout(ctx, leaseRetry(m.cfg))
			r, err := m.client.TimeToLive(octx, lease)
			cancel()
			if err != nil {
				m.fail("lease", err)
				continue
			}
			if r.TTL <= 0 {
				m.log.Info("lease expired, publishing again", "lease", fmt.Sprintf("%x", int64(lease)))
				lease = 0
			}
			break
		}
	}
}

// revoke revokes lease, deleting this node's key, on a clean stop.
func (m *Mesh) revoke(ctx context.Context, lease clientv3.LeaseID) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeTimeout)
	defer cancel()
	if _, err := m.client.Revoke(rctx, lease); err != nil {
		m.log.Warn("mesh key not deleted, it goes when its lease expires", "key", m.key, "err", err)
		return
	}
	m.log.Info("unpublished", "key", m.key)
}

// publish writes this node's document under a new lease, in a transaction
// that succeeds only if no node document changed since the check for
// conflicts. It returns the lease.
func (m *Mesh) publish(ctx context.Context) (clientv3.LeaseID, error) {
	var lease clientv3.LeaseID
	for range publishRetries {
		octx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := m.client.Get(octx, m.prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			return lease, fmt.Errorf("list %s: %w", m.prefix, err)
		}
		for _, kv := range resp.Kvs {
			if string(kv.Key) == m.key {
				continue
			}
			n, err := ParseNode(lastElement(string(kv.Key)), kv.Value)
			if err != nil {
				continue
			}
			if err := conflict(&m.self, &n); err != nil {
				return lease, err
			}
		}
		if lease == 0 {
			octx, cancel := context.WithTimeout(ctx, opTimeout)
			g, err := m.client.Grant(octx, int64(m.cfg.LeaseTTL/time.Second))
			cancel()
			if err != nil {
				return lease, fmt.Errorf("grant lease: %w", err)
			}
			lease = g.ID
		}
		self := m.self
		self.UpdatedAt = time.Now()
		doc, err := self.Marshal()
		if err != nil {
			return lease, err
		}
		octx, cancel = context.WithTimeout(ctx, opTimeout)
		txn, err := m.client.Txn(octx).
			If(clientv3.Compare(clientv3.ModRevision(m.prefix), "<", resp.Header.Revision+1).WithPrefix()).
			Then(clientv3.OpPut(m.key, string(doc), clientv3.WithLease(lease))).
			Commit()
		cancel()
		if err != nil {
			return lease, fmt.Errorf("put %s: %w", m.key, err)
		}
		if txn.Succeeded {
			return lease, nil
		}
	}
	return lease, fmt.Errorf("put %s: the network kept changing, %d attempts", m.key, publishRetries)
}

// conflict returns an error matching ErrConflict if n has self's name or
// serves a prefix overlapping one of self's.
func conflict(self, n *Node) error {
	if n.Name == self.Name {
		return fmt.Errorf("%w: name %q is taken by the node with public key %s", ErrConflict, n.Name, n.PublicKey)
	}
	for _, p := range self.AllowedIPs {
		for _, q := range n.AllowedIPs {
			if p.Overlaps(q) {
				return fmt.Errorf("%w: allowed IP %s overlaps %s of node %q (public key %s)", ErrConflict, p, q, n.Name, n.PublicKey)
			}
		}
	}
	return nil
}

// watchLoop is step 2 of the flow.
func (m *Mesh) watchLoop(ctx context.Context) {
	var b backoff
	for ctx.Err() == nil {
		rev, err := m.list(ctx)
		if err != nil {
			m.fail("list", err)
			b.wait(ctx)
			continue
		}
		b.reset()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range m.client.Watch(wctx, m.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if resp.CompactRevision != 0 {
				m.log.Info("mesh watch compacted, listing again", "revision", resp.CompactRevision)
				break
			}
			if err := resp.Err(); err != nil {
				m.fail("watch", err)
				break
			}
			if len(resp.Events) > 0 {
				m.events(resp.Events, resp.Header.Revision)
			}
		}
		cancel()
		if ctx.Err() == nil {
			b.wait(ctx)
		}
	}
}

// list reads every node document and replaces the known nodes with them.
// A key whose document is malformed keeps the last valid document read.
func (m *Mesh) list(ctx context.Context) (int64, error) {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	resp, err := m.client.Get(octx, m.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", m.prefix, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	nodes := make(map[wgcrypto.PublicKey]*entry, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		e, err := parseEntry(string(kv.Key), kv.Value, kv.CreateRevision, kv.ModRevision)
		if err != nil {
			if old := m.oldEntryLocked(string(kv.Key)); old != nil {
				nodes[old.node.PublicKey] = old
			}
			m.badDocumentLocked(string(kv.Key), kv.ModRevision, err)
			continue
		}
		nodes[e.node.PublicKey] = e
	}
	m.nodes = nodes
	m.status.Revision = resp.Header.Revision
	m.changedLocked()
	return resp.Header.Revision, nil
}

// events applies watch events to the known nodes.
func (m *Mesh) events(evs []*clientv3.Event, rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range evs {
		key := string(ev.Kv.Key)
		m.status.Events++
		if ev.Type == clientv3.EventTypeDelete {
			if old := m.oldEntryLocked(key); old != nil {
				delete(m.nodes, old.node.PublicKey)
			}
			continue
		}
		e, err := parseEntry(key, ev.Kv.Value, ev.Kv.CreateRevision, ev.Kv.ModRevision)
		if err != nil {
			m.badDocumentLocked(key, ev.Kv.ModRevision, err)
			continue
		}
		m.nodes[e.node.PublicKey] = e
	}
	m.status.Revision = rev
	m.changedLocked()
}

// parseEntry parses the document stored under key.
func parseEntry(key string, value []byte, createRev, modRev int64) (*entry, error) {
	n, err := ParseNode(lastElement(key), value)
	if err != nil {
		return nil, err
	}
	return &entry{node: n, createRev: createRev, modRev: modRev, raw: value}, nil
}

// oldEntryLocked returns the known node stored under key, or nil. m.mu is
// held.
func (m *Mesh) oldEntryLocked(key string) *entry {
	raw := lastElement(key)
	for k, e := range m.nodes {
		if keyElement(k) == raw {
			return e
		}
	}
	return nil
}

// badDocumentLocked logs a malformed or foreign document once per version
// and counts it. m.mu is held.
func (m *Mesh) badDocumentLocked(key string, modRev int64, err error) {
	m.status.Errors++
	m.status.LastError = fmt.Sprintf("%s: %v", key, err)
	m.log.Warn("mesh document ignored", "key", key, "revision", modRev, "err", err)
}

// changedLocked marks the nodes changed and kicks applyLoop. m.mu is held.
func (m *Mesh) changedLocked() {
	m.dirty = true
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// applyLoop is step 3 of the flow.
func (m *Mesh) applyLoop(ctx context.Context) {
	applied := make(map[wgcrypto.PublicKey]config.Peer)
	retry := time.NewTimer(0)
	retry.Stop()
	var b backoff
	var lastCache time.Time
	select {
	case <-ctx.Done():
		return
	case <-m.settled:
	}
	defer m.writeCache()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-retry.C:
		}
		m.mu.Lock()
		desired, skips := desiredPeers(&m.self, m.cfg, m.nodes)
		for _, s := range skips {
			if m.logged[s.key] != s.modRev {
				m.logged[s.key] = s.modRev
				m.log.Warn("mesh node not taken", "node", s.name, "public_key", s.key.String(), "reason", s.reason)
			}
		}
		m.mu.Unlock()
		m.dropStatic(desired)
		d := diffPeers(applied, desired)
		if !d.IsEmpty() {
			start := time.Now()
			if err := m.applier.Apply(ctx, d); err != nil {
				if ctx.Err() != nil {
					return
				}
				m.fail("apply", err)
				retry.Reset(b.next())
				continue
			}
			b.reset()
			m.log.Info("mesh peers applied", "set", len(d.Set), "removed", len(d.Remove), "peers", len(desired), "took", time.Since(start).Round(time.Microsecond))
			applied = desired
			m.mu.Lock()
			m.status.Peers = len(applied)
			m.mu.Unlock()
		}
		if time.Since(lastCache) >= cacheInterval {
			m.writeCache()
			lastCache = time.Now()
		} else {
			retry.Reset(cacheInterval - time.Since(lastCache))
		}
	}
}

// dropStatic removes from desired the mesh peers that collide with a static
// peer of the node's file: same public key or an overlapping prefix. The
// file wins.
func (m *Mesh) dropStatic(desired map[wgcrypto.PublicKey]config.Peer) {
	for k, p := range desired {
		for _, s := range m.static {
			if s.PublicKey == k || overlapsAny(p.AllowedIPs, s.AllowedIPs) {
				delete(desired, k)
				break
			}
		}
	}
}

// overlapsAny reports whether a prefix of a overlaps a prefix of b.
func overlapsAny(a, b []netip.Prefix) bool {
	for _, p := range a {
		for _, q := range b {
			if p.Overlaps(q) {
				return true
			}
		}
	}
	return false
}

// fail records and logs a failure of operation op.
func (m *Mesh) fail(op string, err error) {
	m.mu.Lock()
	m.status.Errors++
	m.status.LastError = op + ": " + err.Error()
	m.mu.Unlock()
	m.log.Warn("mesh "+op+" failed", "err", err)
}

func (m *Mesh) setConnected(ok bool) {
	m.mu.Lock()
	m.status.Connected = ok
	m.mu.Unlock()
}

// leaseRetry is the longest wait between two attempts to reach etcd about
// the lease: a third of the TTL, so that a node finds its lease restored by
// a restarted etcd before it expires, and at most maxBackoff.
func leaseRetry(c *Config) time.Duration { return min(maxBackoff, c.LeaseTTL/3) }

// backoff is an exponential retry delay with jitter.
type backoff struct {
	d   time.Duration
	max time.Duration // 0: maxBackoff
}

func (b *backoff) reset() { b.d = 0 }

func (b *backoff) next() time.Duration {
	limit := b.max
	if limit <= 0 {
		limit = maxBackoff
	}
	b.d = min(max(2*b.d, minBackoff), limit)
	return b.d/2 + rand.N(b.d/2+1)
}

// wait sleeps for the next delay; it reports whether ctx is still alive.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// clientTLS returns the TLS config of c, nil with Insecure.
func clientTLS(c *Config) (*tls.Config, error) {
	if c.Insecure && c.CAFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA: no certificate in %s", c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// detectEndpoint returns the local address the host would use towards the
// first reachable etcd endpoint, with port. No packet is sent: a UDP
// "connection" only picks a route.
func detectEndpoint(endpoints []string, port uint16) (netip.AddrPort, error) {
	if port == 0 {
		return netip.AddrPort{}, errors.New("advertise detect: the tunnel has no listen port")
	}
	var errs []error
	for _, e := range endpoints {
		u, err := url.Parse(e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		conn, err := net.Dial("udp", u.Host)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		local := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		conn.Close()
		return netip.AddrPortFrom(local, port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("advertise detect: no route to etcd: %w", errors.Join(errs...))
}
