//go:build linux

package main

// `warren mesh FILE.conf|NAME` runs one node of a mesh whose peers come from
// etcd (package mesh; docs/MESH.md). It brings the interface up as `warren
// up` does, with the file's static peers if any, then publishes the node
// and keeps the tunnel's peers in line with the store: every change is
// applied with lifecycle's Reconfigure, which leaves untouched peers and
// their sessions alone. On SIGINT or SIGTERM it deletes the node's key, then
// takes the interface down.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/warrenvpn/warren/config"
	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/lifecycle"
	"github.com/warrenvpn/warren/mesh"
	"github.com/warrenvpn/warren/uapi"
)

func runMesh(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mesh")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: mesh takes one config file or interface name", errUsage)
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	path, _, err := config.PathFor(fs.Arg(0))
	if err != nil {
		return err
	}
	ifc, mc, err := mesh.Load(path)
	if err != nil {
		return err
	}
	ctx, stop := stopSignals(ctx)
	defer stop()
	// The mesh's peers follow the store; re-reading the file is not built
	// yet. SIGHUP (warren reload, systemd's ExecReload) must not kill the
	// node without cleanup, so it is caught and answered with a warning.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-hup:
				log.Warn("reload is not supported by warren mesh: peers follow the store; restart to apply [Interface] or [Mesh] changes")
			case <-done:
				return
			}
		}
	}()
	return runMeshNode(ctx, ifc, mc, log, lifecycle.Options{})
}

// runMeshNode runs the node until ctx is done, the interface or its control
// socket is deleted from outside, the engine fails or the mesh refuses the
// node, then unpublishes it and takes the interface down.
func runMeshNode(ctx context.Context, ifc *config.Config, mc *mesh.Config, log *slog.Logger, opts lifecycle.Options) error {
	opts.Logger = log
	// The mesh needs the tunnel's port, so it is made after Up; until then
	// warren show and the metrics have no mesh lines.
	var node atomic.Pointer[mesh.Mesh]
	opts.Extras = func(st *uapi.State) {
		if m := node.Load(); m != nil {
			m.Annotate(st)
		}
	}
	t, err := lifecycle.Up(ctx, ifc, opts)
	if err != nil {
		return err
	}
	app := &tunnelApplier{t: t, file: ifc, peers: make(map[wgcrypto.PublicKey]config.Peer)}
	m, err := mesh.New(ifc, mc, mesh.Options{Logger: log, Applier: app, ListenPort: t.ListenPort(), Static: ifc.Peers})
	if err != nil {
		return errors.Join(err, t.Close())
	}
	node.Store(m)
	self := m.Self()
	log.Info("mesh up", "interface", t.Name(), "network", mc.Network, "node", mc.Name,
		"public_key", self.PublicKey.String(), "endpoints", fmt.Sprint(self.Endpoints), "allowed_ips", fmt.Sprint(self.AllowedIPs))

	stopGoverning := startGoverning(t, log)
	defer stopGoverning()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	meshDone := make(chan error, 1)
	go func() {
		meshDone <- m.Run(runCtx)
		cancel()
	}()
	werr := t.Wait(runCtx)
	cancel()
	merr := <-meshDone // the key is deleted before the interface goes
	if lifecycle.IsNormalStop(werr) {
		werr = nil
	}
	if werr == nil && merr == nil {
		log.Info("shutting down", "interface", t.Name())
	}
	if cerr := t.Close(); cerr != nil {
		werr = errors.Join(werr, fmt.Errorf("cleanup: %w", cerr))
	}
	return errors.Join(merr, werr)
}

// tunnelApplier applies the mesh's peer diffs to a tunnel brought up by
// lifecycle.Up: the file's configuration with its static peers, plus the
// mesh peers, handed whole to Reconfigure, which changes only what
// differs.
type tunnelApplier struct {
	t     *lifecycle.Tunnel
	file  *config.Config                     // the node's file as loaded
	peers map[wgcrypto.PublicKey]config.Peer // mesh peers applied
}

// Apply implements mesh.Applier.
func (a *tunnelApplier) Apply(ctx context.Context, d mesh.Diff) error {
	next := maps.Clone(a.peers)
	for _, k := range d.Remove {
		delete(next, k)
	}
	for _, p := range d.Set {
		next[p.PublicKey] = p
	}
	cfg := *a.file
	cfg.Peers = slices.Clip(a.file.Peers)
	meshPeers := slices.Collect(maps.Values(next))
	slices.SortFunc(meshPeers, func(x, y config.Peer) int { return cmp.Compare(x.PublicKey.String(), y.PublicKey.String()) })
	cfg.Peers = append(cfg.Peers, meshPeers...)
	if err := a.t.Reconfigure(ctx, &cfg); err != nil {
		return err
	}
	a.peers = next
	return nil
}
