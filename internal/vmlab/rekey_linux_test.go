package vmlab_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rekeyRun is how long TestL17KernelRekey keeps traffic going: past the
// 120 s Rekey-After-Time of the session's initiator (the kernel's timers
// cannot be shortened).
const rekeyRun = 136 * time.Second

// TestL17KernelRekey: with warren or the kernel as the initiator and a ping
// every 2 s from the guest, the initiator starts a new handshake once the
// session is 120 s old, the other side answers it, and no ping is lost to the
// rekey (L17 and L18 against the kernel module). It runs in parallel with the
// other parallel tests, as it mostly waits.
func TestL17KernelRekey(t *testing.T) {
	t.Parallel()
	l := sharedLab(t)
	cases := []kernelCase{{n: 50, initiate: "kernel"}, {n: 51, initiate: "warren", psk: true}}
	capture := l.startCapture(t, "udp portrange 52050-52051")
	// The cases run at once in goroutines rather than as parallel subtests:
	// they would take both of the -parallel slots on a 2-core machine and
	// keep TestP4KernelPeer waiting until they are done.
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Go(func() {
			t.Run(c.String(), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), rekeyRun+time.Minute)
				defer cancel()
				k := l.start(t, ctx, c)
				if c.initiate == "warren" {
					if got := l.ping(t, k.guestIn, 1); got != 1 {
						t.Fatalf("first ping from warren not answered")
					}
				} else if out, err := l.g.Run(ctx, "ping", k.warrenIn.String(), "1"); err != nil {
					t.Fatalf("first ping from the kernel: %s: %v", out, err)
				}
				// The first handshake's time, as both sides recorded it.
				first := l.guestShow(t, ctx, k.guestName).LastHandshake
				if w := l.show(t, k.warrenName).Interfaces[0].Peers[0].LatestHandshake; w != nil {
					t.Logf("first handshake: kernel %v, warren %v", first, *w)
					if first.IsZero() || w.Before(first) {
						first = *w
					}
				}
				if first.IsZero() {
					t.Fatal("no handshake recorded on either side after the first ping")
				}
				count := int(rekeyRun / (2 * time.Second))
				out, err := l.g.Run(ctx, "ping", k.warrenIn.String(), strconv.Itoa(count), "2000")
				if err != nil {
					t.Fatalf("ping: %s: %v", out, err)
				}
				if answered, _ := strconv.Atoi(strings.Split(out, "/")[0]); answered < count {
					t.Errorf("%s pings answered across the rekey, want all", out)
				}
				gp := l.guestShow(t, ctx, k.guestName)
				wp := l.show(t, k.warrenName).Interfaces[0].Peers[0]
				t.Logf("first handshake %v; latest: kernel %v, warren %v", first.Format(time.TimeOnly), gp.LastHandshake.Format(time.TimeOnly), wp.LatestHandshake.Format(time.TimeOnly))
				if gp.LastHandshake.Sub(first) < 100*time.Second {
					t.Errorf("kernel side: latest handshake %v, %v after the first; want a renewal past 120 s", gp.LastHandshake, gp.LastHandshake.Sub(first))
				}
				if wp.LatestHandshake == nil || wp.LatestHandshake.Sub(first) < 100*time.Second {
					t.Errorf("warren side: latest handshake %v; want a renewal past 120 s after %v", wp.LatestHandshake, first)
				}
			})
		})
	}
	wg.Wait()
	initiations := map[int]map[string]int{}
	for _, m := range capture.messages(t, 52050, 52051) {
		from := "kernel"
		if m.src == host4.Addr() || m.src == host6.Addr() {
			from = "warren"
		}
		if initiations[m.dstPort] == nil {
			initiations[m.dstPort] = map[string]int{}
		}
		initiations[m.dstPort][fmt.Sprintf("%d from %s", m.typ, from)]++
	}
	for _, c := range cases {
		s := initiations[52000+c.n]
		t.Logf("%v: messages seen %v", c, s)
		if s["1 from "+c.initiate] < 2 {
			t.Errorf("%v: %d initiations from the %s, want 2 (the first and the rekey)", c, s["1 from "+c.initiate], c.initiate)
		}
	}
}
