package main

// The 10,000-peer figures of bench/README.md ("Scale"): `warren userspace`
// and wireguard-go (Debian's, or -scale-wireguard-go PATH), each in its own
// namespace with its link up, get the same peers through `wg setconf`
// (first into the empty device, then the same set again, as a reload
// does), then idle. The test reports, side
// by side, the setconf times, the idle CPU and the resident memory. It runs
// only when asked, as it takes about a minute:
//
//	go test ./cmd/warren -run TestScaleFigures -v -scale-peers 10000
//
// Idle CPU is the process's CPU time over each idle window, summed over its
// threads from /proc/PID/task/*/schedstat (nanoseconds; /proc/PID/stat
// counts in 10 ms ticks, a tenth of the 0.1 % goal over 10 s).
// -scale-wireguard-go PATH compares with another wireguard-go, such as the
// current upstream one (go install golang.zx2c4.com/wireguard@latest).

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	wgcrypto "github.com/warrenvpn/warren/crypto"
	"github.com/warrenvpn/warren/internal/netlab/netlabtest"
)

var (
	scalePeers = flag.Int("scale-peers", 0, "TestScaleFigures: peers to configure (0 skips the test)")
	scaleIdle  = flag.Duration("scale-idle", 10*time.Second, "TestScaleFigures: idle time measured, in 3 windows")
	scaleRuns  = flag.Int("scale-runs", 3, "TestScaleFigures: setconf runs of the same set, whose median is reported")
	scaleExe   = flag.String("scale-warren", "", "TestScaleFigures: the warren binary to measure (default: this package, built)")
	scaleWGGo  = flag.String("scale-wireguard-go", "", "TestScaleFigures: the wireguard-go binary to compare with (default: wireguard-go on PATH)")
)

// scaleFigures is what TestScaleFigures measures of one implementation.
type scaleFigures struct {
	first   time.Duration   // setconf into the empty device
	again   []time.Duration // setconf of the same set, each run
	idle    []float64       // % of a core, each window
	rssKiB  int64           // VmRSS after idling
	hwmKiB  int64           // VmHWM
	threads int
}

func TestScaleFigures(t *testing.T) {
	if *scalePeers <= 0 {
		t.Skip("run with -scale-peers N (see the file's comment)")
	}
	netlabtest.RequireRoot(t)
	wg := requireTool(t, "wg")
	wggo := *scaleWGGo
	if wggo == "" {
		wggo = requireTool(t, "wireguard-go")
	}
	exe := *scaleExe
	if exe == "" {
		exe = warrenBinary(t)
	}
	conf := filepath.Join(t.TempDir(), "scale.conf")
	if err := os.WriteFile(conf, []byte(scaleConfig(t, *scalePeers)), 0o600); err != nil {
		t.Fatal(err)
	}
	impls := []struct {
		name string
		argv []string
	}{
		{"warren", []string{exe, "userspace", "-f"}},
		{"wireguard-go", []string{wggo, "-f"}},
	}
	figs := make([]scaleFigures, len(impls))
	for i, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			figs[i] = measureScale(t, im.argv, wg, conf)
		})
	}
	if t.Failed() {
		return
	}
	med := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	medf := func(f []float64) float64 {
		s := slices.Clone(f)
		slices.Sort(s)
		return s[len(s)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d peers (medians; machine: %d CPUs, load average %s)\n", *scalePeers, runtime.NumCPU(), loadAvg())
	fmt.Fprintf(&b, "| figure | warren | wireguard-go |\n| --- | --- | --- |\n")
	row := func(name string, f func(s scaleFigures) string) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, f(figs[0]), f(figs[1]))
	}
	row("wg setconf, empty device", func(s scaleFigures) string { return fmt.Sprintf("%.2f s", s.first.Seconds()) })
	row(fmt.Sprintf("wg setconf, same set again (median of %d)", *scaleRuns), func(s scaleFigures) string {
		return fmt.Sprintf("%.2f s", med(s.again).Seconds())
	})
	row("idle CPU (median of 3 windows)", func(s scaleFigures) string { return fmt.Sprintf("%.3f %% of a core", medf(s.idle)) })
	row("RSS after idling", func(s scaleFigures) string { return fmt.Sprintf("%.1f MiB", float64(s.rssKiB)/1024) })
	row("peak RSS (VmHWM)", func(s scaleFigures) string { return fmt.Sprintf("%.1f MiB", float64(s.hwmKiB)/1024) })
	row("threads", func(s scaleFigures) string { return strconv.Itoa(s.threads) })
	t.Logf("\n%s", b.String())
	for i, s := range figs {
		t.Logf("%s: setconf again %v, idle %.4f %%", impls[i].name, s.again, s.idle)
	}
}

// scaleConfig returns a wg config with n peers, each with an endpoint and
// one /32.
func scaleConfig(t *testing.T, n int) string {
	k, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[Interface]\nPrivateKey = %s\nListenPort = 51820\n", k)
	var pub [32]byte
	for i := range n {
		rand.Read(pub[:])
		fmt.Fprintf(&b, "\n[Peer]\nPublicKey = %s\nEndpoint = 198.18.%d.%d:51820\nAllowedIPs = 10.%d.%d.%d/32\n",
			base64.StdEncoding.EncodeToString(pub[:]), byte(i>>8), byte(i), byte(i>>16), byte(i>>8), byte(i))
	}
	return b.String()
}

// measureScale starts one implementation (argv, then the interface name)
// in a namespace of its own and measures it.
func measureScale(t *testing.T, argv []string, wg, conf string) scaleFigures {
	ns := netlabtest.NewNamespace(t)
	var tag [2]byte
	rand.Read(tag[:])
	name := fmt.Sprintf("ws%x", tag)
	cmd := ns.Command(context.Background(), argv[0], append(argv[1:], name)...)
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s:\n%s", argv[0], log.String())
		}
	})
	sock := filepath.Join("/var/run/wireguard", name+".sock")
	waitFor(t, "the control socket", func() bool { _, err := os.Stat(sock); return err == nil })
	pid := cmd.Process.Pid // ip netns exec execs the command in place
	run := func(args ...string) time.Duration {
		t.Helper()
		t0 := time.Now()
		if out, err := ns.Command(context.Background(), args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return time.Since(t0)
	}
	run("ip", "link", "set", name, "up")
	var f scaleFigures
	f.first = run(wg, "setconf", name, conf)
	for range max(*scaleRuns, 1) {
		f.again = append(f.again, run(wg, "setconf", name, conf))
	}
	if out, err := ns.Command(context.Background(), wg, "show", name, "peers").Output(); err != nil || strings.Count(string(out), "\n") != *scalePeers {
		t.Fatalf("wg show %s peers: %d lines, %v", name, strings.Count(string(out), "\n"), err)
	}
	time.Sleep(2 * time.Second) // the garbage of the sets is collected
	window := *scaleIdle / 3
	for range 3 {
		c0, w0 := processCPU(t, pid), time.Now()
		time.Sleep(window)
		c1, w1 := processCPU(t, pid), time.Now()
		f.idle = append(f.idle, 100*float64(c1-c0)/float64(w1.Sub(w0)))
	}
	f.rssKiB = procStatusKiB(t, pid, "VmRSS")
	f.hwmKiB = procStatusKiB(t, pid, "VmHWM")
	f.threads = int(procStatusKiB(t, pid, "Threads"))
	return f
}

// processCPU returns the CPU time the process pid's live threads have
// used.
func processCPU(t *testing.T, pid int) time.Duration {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("process %d: no threads (%v)", pid, err)
	}
	var sum time.Duration
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		sum += time.Duration(ns)
	}
	return sum
}

// procStatusKiB returns the number of field key of /proc/pid/status (kB
// for sizes).
func procStatusKiB(t *testing.T, pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("/proc/%d/status: no %s", pid, key)
	return 0
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
