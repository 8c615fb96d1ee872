package uapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of a Server's connections (RELIABILITY C12-C15). A client that
// stops reading or sending holds only its own connection, and only until a
// deadline; none of them holds a lock the others need.
const (
	// DefaultIdleTimeout is how long a connection may wait for the next
	// request, or block one read or write, before it is closed.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultConnTimeout is the most a connection may last in all: wg,
	// wg-quick and warren show use one connection per command.
	DefaultConnTimeout = 5 * time.Minute
	// DefaultMaxConns is the most connections served at once; more are
	// accepted, closed at once and counted (Server.Refused).
	DefaultMaxConns = 64
	// RefusedExtra is the get=warren line of Refused, present once a
	// connection was refused: warren show prints it, the metrics export
	// it as a counter.
	RefusedExtra = "warren_control_refused_total"
)

// Backoff of Serve after a temporary Accept error (EMFILE and the like), as
// net/http's: from 5 ms, doubling, at most 1 s.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// Server answers UAPI requests for one Device.
//
// Each request is handled as a whole: a "set=1" request is read to its end
// (at most MaxSetSize bytes) and fully checked before Device.Apply sees it,
// so a bad line anywhere changes nothing (wireguard-go applies the lines
// before the bad one). Calls to the Device are serialised across
// connections; no lock is held while a reply is written, so a client that
// does not read its reply holds up nobody else.
//
// The exported fields may be set before Serve; zero means the default.
type Server struct {
	// IdleTimeout bounds the wait for a request and each read or write of
	// one; 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ConnTimeout bounds a connection's whole life; 0 means
	// DefaultConnTimeout.
	ConnTimeout time.Duration
	// MaxConns is the most connections Serve serves at once; 0 means
	// DefaultMaxConns.
	MaxConns int
	// Extras, if set, adds the process's warren_* lines to each
	// "get=warren" reply (never to "get=1"): it is called with the
	// snapshot just read from the Device and may append to s.Extras and to
	// its peers' Extras. It must not keep s. It runs with no lock of the
	// Server held, possibly concurrently with itself; lines that are not
	// valid Extras are left out of the reply.
	Extras func(s *State)

	dev Device
	log *slog.Logger

	// devMu serialises calls into dev: State under the read lock, Apply
	// under the write lock. It is never held while reading from or writing
	// to a client.
	devMu sync.RWMutex

	refused atomic.Uint64 // connections closed at once for MaxConns
}

// connSet is the set of connections open in one call of Serve.
type connSet struct {
	mu sync.Mutex // guards m
	m  map[net.Conn]struct{}
}

// NewServer returns a Server for d. A nil logger discards.
func NewServer(d Device, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{dev: d, log: logger}
}

// Serve accepts connections on l and serves each in a goroutine of its own
// until Accept fails for good. A temporary Accept error (too many open
// files, say) is logged and retried after a pause that doubles from 5 ms to
// 1 s, so that the control socket outlives a shortage of descriptors. A
// connection beyond MaxConns is closed at once and counted (Refused). When
// l is closed Serve closes the connections still open, waits for their
// goroutines and returns nil; another lasting Accept error is returned after
// the same cleanup. With a *Listener whose socket file was deleted, that
// error matches ErrRemoved: wireguard-go shuts the interface down then
// (RELIABILITY L5).
func (s *Server) Serve(l net.Listener) error {
	var wg sync.WaitGroup
	conns := &connSet{m: make(map[net.Conn]struct{})}
	defer func() {
		conns.mu.Lock()
		for c := range conns.m {
			c.Close()
		}
		conns.mu.Unlock()
		wg.Wait()
	}()
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	var retry time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if !isTemporary(err) {
				return fmt.Errorf("accept: %w", err)
			}
			retry = min(max(2*retry, acceptRetryMin), acceptRetryMax)
			s.log.Warn("uapi accept failed; retrying", "err", err, "retry", retry)
			time.Sleep(retry)
			continue
		}
		retry = 0
		conns.mu.Lock()
		full := len(conns.m) >= maxConns
		if !full {
			conns.m[c] = struct{}{}
		}
		conns.mu.Unlock()
		if full {
			s.refused.Add(1)
			c.Close()
			continue
		}
		wg.Go(func() { s.serveConnLoop(c, conns) })
	}
}

// Refused returns how many connections Serve closed at once because
// MaxConns were open.
func (s *Server) Refused() uint64 { return s.refused.Load() }

// AddRefused appends RefusedExtra to st's extras once a connection was
// refused: get=warren does, and so do the metrics' states.
func (s *Server) AddRefused(st *State) {
	if n := s.refused.Load(); n != 0 {
		st.Extras = append(st.Extras, Extra{Key: RefusedExtra, Value: strconv.FormatUint(n, 10)})
	}
}

// isTemporary reports whether an Accept error may pass: a shortage of
// descriptors, buffers or memory, or an aborted connection.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConnLoop serves c under the Server's deadlines and closes it.
func (s *Server) serveConnLoop(c net.Conn, conns *connSet) {
	defer func() {
		conns.mu.Lock()
		delete(conns.m, c)
		conns.mu.Unlock()
		c.Close()
	}()
	idle, total := s.IdleTimeout, s.ConnTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	if total <= 0 {
		total = DefaultConnTimeout
	}
	dc := &deadlineConn{Conn: c, idle: idle, end: time.Now().Add(total)}
	if err := s.ServeConn(dc); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Info("uapi connection ended", "err", err)
	}
}

// deadlineConn sets the connection's deadline before every read and write:
// idle from now, but never past end.
type deadlineConn struct {
	net.Conn
	idle time.Duration
	end  time.Time
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	c.SetDeadline(c.deadline())
	return c.Conn.Read(p)
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.SetDeadline(c.deadline())
	return c.Conn.Write(p)
}

func (c *deadlineConn) deadline() time.Time {
	d := time.Now().Add(c.idle)
	if d.After(c.end) {
		return c.end
	}
	return d
}

// ServeConn serves requests from rw until the client stops sending (nil),
// sends an operation other than get=1 or set=1 (an error, without any
// reply, as wireguard-go), or the connection fails. It does not close rw.
func (s *Server) ServeConn(rw io.ReadWriter) error {
	br := bufio.NewReaderSize(rw, maxLine)
	bw := bufio.NewWriter(rw)
	for {
		op, err := br.ReadSlice('\n')
		switch {
		case err == io.EOF:
			return nil
		case err == bufio.ErrBufferFull:
			return errors.New("operation line too long")
		case err != nil:
			return err
		}
		var reqErr error
		switch string(op) {
		case "set=1\n":
			reqErr = s.set(br)
		case "get=1\n", "get=warren\n":
			c, err := br.ReadByte()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if c != '\n' {
				reqErr = Errorf(ErrnoInvalid, "trailing character in UAPI get: %q", c)
				break
			}
			if reqErr = s.get(bw, string(op) == "get=warren\n"); errors.Is(reqErr, errWrite) {
				return reqErr
			}
		default:
			return fmt.Errorf("invalid UAPI operation %q", op)
		}
		errno := errnoOf(reqErr)
		if reqErr != nil {
			s.log.Warn("uapi request failed", "errno", errno, "err", reqErr)
		}
		b := append(make([]byte, 0, 16), "errno="...)
		b = strconv.AppendInt(b, errno, 10)
		b = append(b, "\n\n"...)
		bw.Write(b)
		if err := bw.Flush(); err != nil {
			return err
		}
		if errors.Is(reqErr, errReadRequest) {
			// The request stream is out of step (a line too long, a read
			// error): nothing after it can be trusted.
			return reqErr
		}
	}
}

var errWrite = errors.New("write reply")

// get writes the reply to get=1, or with drops and extras to get=warren. The state is
// taken under devMu and written after it is released: a client that does
// not read holds up only itself.
func (s *Server) get(w io.Writer, warren bool) error {
	s.devMu.RLock()
	st, err := s.dev.State()
	s.devMu.RUnlock()
	if err != nil {
		return err
	}
	if warren && s.Extras != nil {
		s.Extras(st)
	}
	if warren {
		s.AddRefused(st)
	}
	err = writeState(w, st, warren)
	wipeState(st)
	if err != nil {
		return fmt.Errorf("%w: %v", errWrite, err)
	}
	return nil
}

func (s *Server) set(br *bufio.Reader) error {
	c, err := readSet(br)
	if err != nil {
		return err
	}
	defer wipeChange(c)
	s.devMu.Lock()
	defer s.devMu.Unlock()
	return s.dev.Apply(c)
}

// wipeState zeroes the keys of a State once its reply is written. The
// copies in the connection's write buffer are beyond reach.
func wipeState(st *State) {
	st.PrivateKey.Zero()
	for i := range st.Peers {
		clear(st.Peers[i].PresharedKey[:])
	}
}

// wipeChange zeroes the keys of a Change once it is applied.
func wipeChange(c *Change) {
	if c.PrivateKey != nil {
		c.PrivateKey.Zero()
	}
	for i := range c.Peers {
		if psk := c.Peers[i].PresharedKey; psk != nil {
			clear(psk[:])
		}
	}
}

// Run serves l until ctx is done, then closes l and returns once every
// connection has ended. It is Serve with a context.
func (s *Server) Run(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	return s.Serve(l)
}
