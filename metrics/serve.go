package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves /metrics for one interface until Close.
type Server struct {
	ln   net.Listener
	http *http.Server
	wg   sync.WaitGroup
	err  error // what Serve returned other than http.ErrServerClosed; read after wg.Wait
}

// Serve listens on addr and serves the metrics of the interface device,
// read from src at each scrape, plus the Go runtime's and the process's,
// at /metrics. It returns once the socket is bound, so that a port in use
// fails the caller's step; the serving goroutine runs until Close. A scrape
// whose state cannot be read fails with status 500, so that Prometheus
// records the target as down; log receives the cause (nil discards it).
func Serve(addr netip.AddrPort, device string, src Source, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewCollector(device, src)); err != nil {
		return nil, err
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.HTTPErrorOnError, // a scrape without the interface fails (up = 0)
	}))
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{ln: ln, http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	s.wg.Go(s.serveLoop)
	return s, nil
}

// serveLoop serves HTTP until Close.
func (s *Server) serveLoop() {
	if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		s.err = err
	}
}

// Addr returns the address the server listens on (useful with port 0).
func (s *Server) Addr() netip.AddrPort {
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// Close stops the server, waits up to 5 s for scrapes in progress, and
// returns once its goroutine has ended. It reports why serving stopped
// early, if it did.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = s.http.Close()
	}
	s.wg.Wait()
	return errors.Join(s.err, err)
}
