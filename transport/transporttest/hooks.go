package transporttest

import "net/netip"

// Always returns a hook that decides a for every packet.
func Always(a Action) Hook {
	return func(*Packet) Action { return a }
}

// Match returns a hook that applies h to the packets for which match
// reports true and delivers the others.
func Match(match func(p *Packet) bool, h Hook) Hook {
	return func(p *Packet) Action {
		if match(p) {
			return h(p)
		}
		return Deliver
	}
}

// Chain returns a hook that runs hooks in order until one decides other
// than Deliver.
func Chain(hooks ...Hook) Hook {
	return func(p *Packet) Action {
		for _, h := range hooks {
			if a := h(p); a != Deliver {
				return a
			}
		}
		return Deliver
	}
}

// DropEvery returns a hook that drops every k-th packet it sees (the k-th,
// 2k-th, ...).
func DropEvery(k int) Hook {
	seen := 0
	return func(*Packet) Action {
		seen++
		if k > 0 && seen%k == 0 {
			return Drop
		}
		return Deliver
	}
}

// RewriteSource returns a hook that makes packets from from appear to come
// from to, one way only (a spoofed or roaming source); replies to to reach
// whatever transport is at to.
func RewriteSource(from, to netip.AddrPort) Hook {
	from, to = unmap(from), unmap(to)
	return func(p *Packet) Action {
		if p.Src == from {
			p.Src = to
		}
		return Deliver
	}
}
