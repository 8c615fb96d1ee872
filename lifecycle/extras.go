package lifecycle

import (
	"github.com/warrenvpn/warren/metrics"
	"github.com/warrenvpn/warren/tunnel"
	"github.com/warrenvpn/warren/uapi"
)

// withExtras is the engine as the metrics read it, with the process's
// extras (Options.Extras) and the control socket's refused connections
// added to each state.
type withExtras struct {
	*tunnel.Engine
	extras func(st *uapi.State)
}

var _ metrics.CounterSource = withExtras{}

// State returns the engine's state with the extras added.
func (w withExtras) State() (*uapi.State, error) {
	st, err := w.Engine.State()
	if err == nil {
		w.extras(st)
	}
	return st, err
}

// metricsSource returns what the metrics server reads: the engine, with
// Options.Extras if set and the control server's refused connections
// (uapi.RefusedExtra, as get=warren has them) once there are any.
func (t *Tunnel) metricsSource() metrics.Source {
	return withExtras{Engine: t.eng, extras: func(st *uapi.State) {
		if t.opts.Extras != nil {
			t.opts.Extras(st)
		}
		if srv := t.ctl.srv.Load(); srv != nil {
			srv.AddRefused(st)
		}
	}}
}
