package tunnel

import (
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenvpn/warren/allowedips"
	"github.com/warrenvpn/warren/crypto"
)

// Transport is the engine's UDP side: batched datagrams to and from
// endpoints. package transport implements it over a UDP socket and
// transport/transporttest over an in-memory network.
//
// Receive blocks until at least one datagram is ready and fills bufs[i],
// sizes[i], eps[i] (the sender) and locals[i] (our address the datagram was
// sent to, IPv4 unmapped; the zero Addr where the transport cannot tell);
// each buffer is the caller's and holds at least bufferSize bytes. Send
// sends every buffer as one datagram to ep from the source address local, or
// from the system's choice when local is the zero Addr (RO6, RO7); the
// buffers are borrowed for the call. A local the host no longer has fails
// those datagrams with an error wrapping syscall.EINVAL, EADDRNOTAVAIL or
// ENETUNREACH; the engine then sends them from the system's choice and, if
// that works, forgets local (RO5, RO8). Send tries every datagram and
// returns how many the system accepted (a datagram lost later in the
// network counts as sent) and errors.Join of the failures; the engine
// counts the rest as dropped. Receive and Send may run concurrently, and
// Send from several goroutines. After Close, Receive and Send return
// net.ErrClosed. A Transport may also tell the system's own source choice
// toward an endpoint (routeSourcer, source.go).
type Transport interface {
	Receive(bufs [][]byte, sizes []int, eps []netip.AddrPort, locals []netip.Addr) (int, error)
	Send(bufs [][]byte, ep netip.AddrPort, local netip.Addr) (int, error)
	BatchSize() int
	Close() error
}

// Options tune an Engine. The zero value is ready to use.
type Options struct {
	// Logger receives the engine's logs; nil discards them. Nothing is
	// logged per packet at Info or above.
	Logger *slog.Logger
	// Clock is the time source of every timer; nil means SystemClock.
	Clock Clock
	// Rand supplies handshake randomness, receiver indices and timer
	// jitter; nil means crypto/rand.Reader.
	Rand io.Reader
	// TickInterval is the resolution of the timers. 0 means 100 ms. A
	// negative value starts no timer goroutine: the caller drives the
	// timers with Engine.Tick (tests with a fake clock do this).
	TickInterval time.Duration
	// Rebind, if set, moves the transport to another listen port or
	// fwmark when a UAPI set asks for one (the caller owns the socket).
	// Without it such a request fails with ErrnoPortInUse.
	Rebind func(port uint16, fwMark uint32) (Transport, error)
	// PathMTUProbe is how long a peer's lowered path MTU stands before the
	// engine checks whether the path widened again (pmtu.go). 0 means
	// DefaultPathMTUProbe (10 minutes); a negative value never checks.
	PathMTUProbe time.Duration
	// Layer2, if set, makes the engine carry Ethernet frames between a TAP
	// and its peers (Mode = tap, switch.go) instead of IP packets.
	Layer2 *Layer2
	// Pipelines adds pipelines beside the adapter and transport given to
	// New (pipeline.go): each is one more queue of the same multi-queue
	// adapter and one more transport on the same port, with its own
	// goroutines. The engine owns and closes them. Layer 2 mode runs one
	// pipeline: it closes them at once.
	Pipelines []Pipeline
	// RebindPipelines, with Pipelines, opens the n transports of a rebind
	// in one call (one SO_REUSEPORT group); without it Rebind is called
	// once per pipeline, the later calls with the port the first got.
	RebindPipelines func(port uint16, fwMark uint32, n int) ([]Transport, error)
	// CryptoHelpers is the number of goroutines that help a pipeline seal
	// and open a large batch (helpers.go). 0 means automatic: the cores
	// left after two goroutines per pipeline (none on two cores with one
	// pipeline); a negative value means none.
	CryptoHelpers int
}

// Layer2 configures the engine's layer 2 mode.
type Layer2 struct {
	// Forward lets a frame received from one peer go on to others (a hub
	// of a star). Without it a peer's frames go only to the TAP (split
	// horizon), which keeps a full mesh free of loops.
	Forward bool
	// MACAgeing is how long a MAC table entry lives unseen; 0 means
	// mactable.DefaultAgeing (300 s).
	MACAgeing time.Duration
	// MaxMACs and MaxMACsPerPeer bound the MAC table in total and per
	// peer (the local side counts as one peer); 0 means the mactable
	// defaults.
	MaxMACs, MaxMACsPerPeer int
}

// Engine is a WireGuard device in user space: it moves packets between an
// adapter and a transport, encrypting, routing by allowed IPs and running
// handshakes and timers. Its methods are safe for concurrent use.
//
// Lock order: Engine.state, then peer.handshake, then peer.mu, then
// indexTable.mu; and Engine.state, then Engine.local. A crypto.Handshake's
// (or crypto.Identity's) own lock comes after peer.handshake and peer.mu, and
// is taken under peer.mu only with peer.handshake held (Clear,
// SetPresharedKey); Engine.rand comes after it (a handshake reads
// randomness). Tick's timerQueue.tick comes before peer.handshake.
// Engine.peers, the allowed-IPs table's lock, Engine.jitter, Engine.rand,
// Engine.fatal, rateLimiter.mu, rateLimitedLog.mu, timerQueue.mu and a
// peer's pathMTU.mu are leaves: nothing is taken while one is held.
//
// The send and receive loops take only peer.mu, indexTable.mu and leaves
// other than Engine.rand, each briefly; the receive loop also takes a
// crypto.Identity's lock, alone, to check a handshake message's mac2. They never wait for a handshake's
// X25519: that runs under peer.handshake with peer.mu released
// (handshake.go), and the loops ask for initiations without waiting
// (requestInitiation). No lock is held across a call to the adapter or the
// transport, except that a rebind (under Engine.state and Engine.local)
// closes and opens sockets.
type Engine struct {
	adapter   Adapter
	tr        atomic.Pointer[transportBox] // replaced by a rebind
	log       *slog.Logger
	warn      rateLimitedLog
	clock     Clock
	tickEvery time.Duration
	rebind    func(port uint16, fwMark uint32) (Transport, error)
	rebindN   func(port uint16, fwMark uint32, n int) ([]Transport, error)
	extra     []*pipeline   // pipelines 1 and up; pipeline 0 is adapter and tr
	maxLag    uint64        // sendGate's bound, in batches
	helpers   *helperPool   // crypto helpers (helpers.go); nil without
	gateWaits atomic.Uint64 // times a pipeline waited at a sendGate

	rand struct {
		sync.Mutex // guards r; held while a handshake reads it
		r          io.Reader
	}
	// jitter seeds each peer's timer jitter generator (timers.go); it has
	// its own lock so that seeding under peer.mu never waits for a
	// handshake reading rand.
	jitter struct {
		sync.Mutex // guards r
		r          *mrand.Rand
	}

	// state serialises Up, Down, configuration changes and Close.
	state struct {
		sync.Mutex
		closed bool
	}
	up atomic.Bool // reports whether the engine is up; written under state

	// local is our identity and the informational socket settings.
	local struct {
		sync.RWMutex // guards the fields below
		privateKey   crypto.PrivateKey
		publicKey    crypto.PublicKey
		listenPort   uint16
		fwMark       uint32
		identity     *crypto.Identity // nil without a private key
	}
	// id mirrors local.identity (written under local) for the receive
	// loop, which checks handshake MACs without taking local.
	id atomic.Pointer[crypto.Identity]

	peers struct {
		sync.RWMutex // guards byKey and list; peer values stay valid after removal
		byKey        map[crypto.PublicKey]*peer
		list         []*peer // configuration order; replaced, never modified in place
	}
	routes allowedips.Table[*peer] // allowed IPs; lock-free lookups

	indices        indexTable
	handshakes     chan handshakeWork // bounded (D4), filled by receiveLoop: valid mac1, or cookie replies
	handshakesMAC2 chan handshakeWork // bounded, filled by receiveLoop under load: valid mac2
	initiations    chan *peer         // initiation requests of the data path (requestInitiation), one per peer at most
	load           loadMeter          // handshake load; under load cookies are demanded (D6)
	limiter        rateLimiter        // handshakes with a valid mac2 per source under load (D1-D3)
	cookieLimiter  rateLimiter        // cookie replies per source under load (D1-D3)
	adapterBatch   int                // most packets per Adapter.Write
	retryDelay     time.Duration      // wait after a failed read (readRetryDelay; tests shorten it)
	pmtuProbe      time.Duration      // Options.PathMTUProbe with the default applied
	unreachable    icmpLimiter        // host unreachable replies (N10, icmp.go)

	// l2 is the layer 2 state; nil in TUN mode.
	l2 *layer2

	pool    bufferPool
	drops   dropCounters
	batches batchStats
	timerq  timerQueue // peers with an armed deadline (timers.go)

	done      chan struct{} // closed by Close: goroutines stop
	wg        sync.WaitGroup
	closeOnce sync.Once
	// closeAsked is set as Close starts, before it waits for e.state: a
	// paced set (uapi.go) then stops pausing, so Close waits for the
	// rest of its work only.
	closeAsked atomic.Bool
	fatal      struct {
		sync.Mutex               // guards err
		err        error         // the first fatal error
		failed     chan struct{} // closed when err is set
	}
}

// New returns an Engine that takes ownership of adapter and tr (Close
// closes them) and starts its goroutines. The engine starts down and
// without a private key: call SetConfig and Up.
func New(adapter Adapter, tr Transport, opts Options) *Engine {
	e := newEngine(adapter, tr, opts)
	e.startPipelines()
	e.startHelpers()
	e.wg.Go(e.handshakeWorker)
	if e.tickEvery > 0 {
		e.wg.Go(e.timerLoop)
	}
	return e
}

// newEngine returns an Engine without goroutines; tests drive it step by
// step through processOutbound, processInbound, drainHandshakes and Tick.
func newEngine(adapter Adapter, tr Transport, opts Options) *Engine {
	e := &Engine{
		adapter:        adapter,
		log:            opts.Logger,
		clock:          opts.Clock,
		tickEvery:      opts.TickInterval,
		rebind:         opts.Rebind,
		rebindN:        opts.RebindPipelines,
		handshakes:     make(chan handshakeWork, handshakeQueueSize),
		handshakesMAC2: make(chan handshakeWork, handshakeMAC2QueueSize),
		initiations:    make(chan *peer, handshakeQueueSize),
		done:           make(chan struct{}),
	}
	e.cookieLimiter.allowWhenFull = true
	e.fatal.failed = make(chan struct{})
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.clock == nil {
		e.clock = SystemClock()
	}
	if e.tickEvery == 0 {
		e.tickEvery = defaultTickEvery
	}
	e.tr.Store(newTransportBox(tr))
	e.local.listenPort = portOf(tr)
	e.rand.r = opts.Rand
	if e.rand.r == nil {
		e.rand.r = rand.Reader
	}
	var seed [32]byte
	io.ReadFull(e.rand.r, seed[:]) // a failing source leaves a fixed jitter sequence
	e.jitter.r = mrand.New(mrand.NewChaCha8(seed))
	e.warn = rateLimitedLog{log: e.log, clock: e.clock, last: make(map[string]time.Duration)}
	e.peers.byKey = make(map[crypto.PublicKey]*peer)
	e.indices.init()
	if opts.Layer2 != nil {
		e.l2 = newLayer2(opts.Layer2)
	}
	e.addPipelines(opts.Pipelines)
	e.helpers = newHelperPool(helperCount(opts.CryptoHelpers, e.Pipelines()))
	e.maxLag = gateLag(e.maxBatch())
	e.adapterBatch = batchSize(adapter.BatchSize())
	e.retryDelay = readRetryDelay
	e.pmtuProbe = opts.PathMTUProbe
	if e.pmtuProbe == 0 {
		e.pmtuProbe = DefaultPathMTUProbe
	}
	e.initTimers()
	return e
}

// Up starts moving packets: peers with a persistent keepalive handshake at
// once (L3). Up on an engine that is up does nothing.
func (e *Engine) Up() error {
	e.state.Lock()
	defer e.state.Unlock()
	if e.state.closed {
		return ErrClosed
	}
	if e.up.Load() {
		return nil
	}
	e.up.Store(true)
	for _, p := range e.peerList() {
		p.start()
	}
	return nil
}

// Down stops moving packets: keypairs and handshakes are wiped, timers
// stopped and staged packets purged (L3). Packets read while down are
// dropped and counted. The adapter and transport stay open.
func (e *Engine) Down() error {
	e.state.Lock()
	defer e.state.Unlock()
	if e.state.closed {
		return ErrClosed
	}
	e.downLocked()
	return nil
}

// downLocked takes the engine down; e.state must be held.
func (e *Engine) downLocked() {
	if !e.up.Load() {
		return
	}
	e.up.Store(false)
	for _, p := range e.peerList() {
		p.stop()
	}
}

// IsUp reports whether the engine is up.
func (e *Engine) IsUp() bool { return e.up.Load() }

// Close takes the engine down, closes the transport and the adapter, waits
// for every goroutine to return and wipes the keys: our private key and
// cookie secret, and each peer's preshared key and handshake secrets. It is idempotent and
// returns the first fatal error the engine met, if any (a removed adapter
// is not one).
func (e *Engine) Close() error {
	e.closeAsked.Store(true)
	e.closeOnce.Do(func() {
		e.state.Lock()
		e.downLocked()
		e.state.closed = true
		e.state.Unlock()

		close(e.done)
		var errs []error
		if err := e.transport().Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		if err := e.adapter.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		errs = append(errs, e.closePipelines()...)
		e.wg.Wait()

		// Wipe what Go lets us wipe (RELIABILITY P18).
		for _, p := range e.peerList() {
			p.handshake.Lock()
			p.mu.Lock()
			p.wipeSecretsLocked()
			p.mu.Unlock()
			p.handshake.Unlock()
		}
		e.local.Lock()
		e.local.privateKey.Zero()
		id := e.local.identity
		e.local.identity = nil
		e.id.Store(nil)
		e.local.Unlock()
		if id != nil {
			id.Wipe()
		}
		if err := errors.Join(errs...); err != nil {
			e.setFatal(err)
		}
	})
	if err := e.Err(); err != nil && !errors.Is(err, ErrAdapterRemoved) {
		return err
	}
	return nil
}

var errRebind = errors.New("the engine cannot rebind its transport")

// transportBox lets the transport be swapped atomically.
type transportBox struct {
	Transport
	replaced chan struct{} // closed once a rebind has replaced this transport
}

func newTransportBox(tr Transport) *transportBox {
	return &transportBox{Transport: tr, replaced: make(chan struct{})}
}

// portOf returns the local port of tr if it reports one (transport.UDP
// does), else 0.
func portOf(tr Transport) uint16 {
	if p, ok := tr.(interface{ Port() uint16 }); ok {
		return p.Port()
	}
	return 0
}

// replaceTransport makes tr the transport and closes the old one; the
// receive loop moves over when its Receive fails.
func (e *Engine) replaceTransport(tr Transport) {
	old := e.tr.Swap(newTransportBox(tr))
	close(old.replaced)
	old.Close()
}

// transport returns the current transport.
func (e *Engine) transport() Transport { return e.tr.Load().Transport }

// ErrAdapterRemoved is the engine's error (Err) after its adapter's
// interface was deleted from outside. That is a normal stop: `wg-quick
// down` stops a userspace implementation this way.
var ErrAdapterRemoved = errors.New("interface removed")

// setFatal records err as the reason the engine stopped unless one is
// recorded, and closes Done. It reports whether err was recorded, so that
// of several pipelines failing at once only the first logs.
func (e *Engine) setFatal(err error) bool {
	e.fatal.Lock()
	defer e.fatal.Unlock()
	if e.fatal.err != nil {
		return false
	}
	e.fatal.err = err
	close(e.fatal.failed)
	return true
}

// Done is closed when the engine stopped moving packets on its own: its
// adapter was removed (Err matches ErrAdapterRemoved) or it failed for good
// (the adapter or the transport kept failing, or a rebind could not restore
// its socket). The caller should then Close it.
func (e *Engine) Done() <-chan struct{} { return e.fatal.failed }

// Err returns nil until Done is closed, then why the engine stopped: an
// error matching ErrAdapterRemoved for a normal stop, else the fatal error.
func (e *Engine) Err() error {
	e.fatal.Lock()
	defer e.fatal.Unlock()
	return e.fatal.err
}

// isDropped reports whether err says the adapter read and discarded a
// malformed packet (the Adapter contract).
func isDropped(err error) bool {
	var d interface{ Dropped() bool }
	return errors.As(err, &d) && d.Dropped()
}

// isRemoved reports whether err says the adapter's interface was deleted
// (the Adapter contract).
func isRemoved(err error) bool {
	var r interface{ Removed() bool }
	return errors.As(err, &r) && r.Removed()
}

// isClosing reports whether Close has begun.
func (e *Engine) isClosing() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

// Drops returns how many packets were dropped for reason r.
func (e *Engine) Drops(r DropReason) uint64 {
	if r < 0 || r >= numDropReasons {
		return 0
	}
	return e.drops[r].Load()
}

// DropCounts returns the non-zero drop counters by reason name, with the
// kernel's drops at the pipelines' sockets as "socket" (as in get=warren).
func (e *Engine) DropCounts() map[string]uint64 {
	m := make(map[string]uint64)
	for _, d := range e.dropList() {
		m[d.Reason] = d.Count
	}
	return m
}

// readRand fills b from the injected randomness source.
func (e *Engine) readRand(b []byte) error {
	e.rand.Lock()
	defer e.rand.Unlock()
	_, err := io.ReadFull(e.rand.r, b)
	return err
}

// lockedRand serialises reads of the engine's randomness source, which
// need not be safe for concurrent use.
type lockedRand struct{ e *Engine }

func (r lockedRand) Read(b []byte) (int, error) {
	if err := r.e.readRand(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// randReader returns the engine's randomness for the crypto package.
func (e *Engine) randReader() io.Reader { return lockedRand{e} }
