package lifecycle

// A peer whose Endpoint host name does not resolve when the tunnel comes up
// (a boot before the network or DNS is ready) does not stop it: the peer
// is added without an endpoint, and resolveLoop tries the name again in the
// background, as wg does in the foreground for wg-quick:
//  1. Up (step 1) or Reconfigure tries each name once; a failure puts the
//     peer in Tunnel.res.pending with its first retry due after
//     retryInitial;
//  2. resolveLoop sleeps until the earliest retry is due (or a new pending
//     peer wakes it), then resolves each due name with no lock held;
//  3. under res.mu, a peer still pending with the same Endpoint gets the
//     address through Engine.Apply (only its endpoint changes: its
//     sessions and allowed IPs stay); a failure schedules the next retry,
//     the delay growing by a fifth up to retryMax, until Options.
//     EndpointRetries retries have failed (then it is logged and dropped:
//     the peer can still reach us and so give us its endpoint).

import (
	"context"
	"fmt"
	"time"

	"github.com/warrenvpn/warren/config"
	"github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/uapi"
)

// Retry timing of endpoint names, as wg's (config.c): 1 s, then a fifth
// more each time, at most 20 s between tries.
const (
	retryInitial = time.Second      // delay before the first retry
	retryMax     = 20 * time.Second // longest delay between retries

	// DefaultEndpointRetries is wg's default for
	// WG_ENDPOINT_RESOLUTION_RETRIES: about 72 s of retries.
	DefaultEndpointRetries = 15
)

// pendingEndpoint is a peer whose endpoint name has not resolved yet.
type pendingEndpoint struct {
	peer    config.Peer
	retries int           // retries done so far
	delay   time.Duration // before the next retry
	next    time.Time     // when the next retry is due
}

// resolveLater records that p's endpoint did not resolve (err) and wakes
// resolveLoop to retry it. The caller holds no lock.
func (t *Tunnel) resolveLater(p *config.Peer, err error) {
	if t.opts.EndpointRetries < 0 {
		t.log.Error("endpoint does not resolve; the peer is added without it (no retries)",
			"interface", t.name, "peer", p.PublicKey.String(), "endpoint", p.Endpoint, "err", err)
		return
	}
	t.log.Warn("endpoint does not resolve yet; the peer is added without it and the name retried in the background",
		"interface", t.name, "peer", p.PublicKey.String(), "endpoint", p.Endpoint, "err", err)
	t.res.Lock()
	t.res.pending[p.PublicKey] = &pendingEndpoint{peer: *p, delay: retryInitial, next: time.Now().Add(retryInitial)}
	t.res.Unlock()
	select {
	case t.res.wake <- struct{}{}:
	default:
	}
}

// forgetPending drops pk from the retries (the peer was removed or its
// Endpoint changed).
func (t *Tunnel) forgetPending(pk crypto.PublicKey) {
	t.res.Lock()
	delete(t.res.pending, pk)
	t.res.Unlock()
}

// startResolver starts resolveLoop and pushes its stop onto the undo stack.
func (t *Tunnel) startResolver() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.wg.Go(func() {
		defer close(done)
		t.resolveLoop(ctx)
	})
	t.undo.push(func() error {
		cancel()
		<-done
		return nil
	})
}

// resolveLoop retries pending endpoint names until ctx is done (steps 2
// and 3 above).
func (t *Tunnel) resolveLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		t.res.Lock()
		var earliest time.Time
		for _, pe := range t.res.pending {
			if earliest.IsZero() || pe.next.Before(earliest) {
				earliest = pe.next
			}
		}
		t.res.Unlock()
		wait := time.Hour
		if !earliest.IsZero() {
			wait = max(time.Until(earliest), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-t.res.wake:
			continue
		case <-timer.C:
		}
		t.retryDue(ctx)
	}
}

// retryDue resolves every pending name that is due.
func (t *Tunnel) retryDue(ctx context.Context) {
	now := time.Now()
	t.res.Lock()
	var due []config.Peer
	for _, pe := range t.res.pending {
		if !pe.next.After(now) {
			due = append(due, pe.peer)
		}
	}
	t.res.Unlock()
	for i := range due {
		p := &due[i]
		ep, err := t.resolve(ctx, p)
		if ctx.Err() != nil {
			return
		}
		t.res.Lock()
		pe := t.res.pending[p.PublicKey]
		if pe == nil || pe.peer.Endpoint != p.Endpoint {
			t.res.Unlock()
			continue // removed or changed meanwhile
		}
		if err == nil {
			delete(t.res.pending, p.PublicKey)
			// Under res.mu, so that a Reconfigure that changes this
			// peer's endpoint meanwhile (it forgets the peer first,
			// under the same lock) is not overwritten.
			aerr := t.eng.Apply(&uapi.Change{Peers: []uapi.PeerChange{{PublicKey: p.PublicKey, UpdateOnly: true, Endpoint: &ep}}})
			t.res.Unlock()
			if aerr != nil {
				t.log.Warn("endpoint resolved but not applied", "interface", t.name, "peer", p.PublicKey.String(), "err", aerr)
			} else {
				t.log.Info("endpoint resolved", "interface", t.name, "peer", p.PublicKey.String(), "endpoint", p.Endpoint, "address", ep.String(), "retries", pe.retries+1)
			}
			continue
		}
		pe.retries++
		if t.opts.EndpointRetries >= 0 && pe.retries >= t.opts.EndpointRetries {
			delete(t.res.pending, p.PublicKey)
			t.res.Unlock()
			t.log.Error(fmt.Sprintf("endpoint still does not resolve after %d retries; giving up (the peer can still reach us)", pe.retries),
				"interface", t.name, "peer", p.PublicKey.String(), "endpoint", p.Endpoint, "err", err)
			continue
		}
		pe.delay = min(pe.delay*6/5, retryMax)
		pe.next = time.Now().Add(pe.delay)
		retries, delay := pe.retries, pe.delay
		t.res.Unlock()
		t.log.Warn("endpoint does not resolve yet", "interface", t.name, "peer", p.PublicKey.String(), "endpoint", p.Endpoint,
			"retries", retries, "next_in", delay.Round(time.Millisecond).String(), "err", err)
	}
}
