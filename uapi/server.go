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
)

// Server answers UAPI requests for one Device.
//
// Each request is handled as a whole: a "set=1" request is read to its end
// and fully checked before Device.Apply sees it, so a bad line anywhere
// changes nothing (wireguard-go applies the lines before the bad one). Calls
// to the Device are serialised across connections.
type Server struct {
	dev Device
	log *slog.Logger

	// devMu serialises calls into dev: State under the read lock, Apply
	// under the write lock.
	devMu sync.RWMutex
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
// until Accept fails. When l is closed it closes the connections still open,
// waits for their goroutines and returns nil; another Accept error is
// returned after the same cleanup. With a *Listener whose socket file was
// deleted, that error matches ErrRemoved: wireguard-go shuts the interface
// down then (RELIABILITY L5).
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
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		conns.mu.Lock()
		conns.m[c] = struct{}{}
		conns.mu.Unlock()
		wg.Go(func() { s.serveConnLoop(c, conns) })
	}
}

// serveConnLoop serves c and closes it.
func (s *Server) serveConnLoop(c net.Conn, conns *connSet) {
	defer func() {
		conns.mu.Lock()
		delete(conns.m, c)
		conns.mu.Unlock()
		c.Close()
	}()
	if err := s.ServeConn(c); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Info("uapi connection ended", "err", err)
	}
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

// get writes the reply to get=1, or with drops to get=warren.
func (s *Server) get(w io.Writer, drops bool) error {
	s.devMu.RLock()
	st, err := s.dev.State()
	if err != nil {
		s.devMu.RUnlock()
		return err
	}
	err = writeState(w, st, drops)
	s.devMu.RUnlock()
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
	s.devMu.Lock()
	defer s.devMu.Unlock()
	return s.dev.Apply(c)
}

// Run serves l until ctx is done, then closes l and returns once every
// connection has ended. It is Serve with a context.
func (s *Server) Run(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	return s.Serve(l)
}
