package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// runMain runs warren as main does and returns its output and exit status.
func runMain(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &out, &errb)
	code = report(&errb, args, err)
	return out.String(), errb.String(), code
}

// errorLines counts the lines of stderr that report an error.
func errorLines(stderr string) int {
	n := 0
	for line := range strings.Lines(stderr) {
		if strings.HasPrefix(line, "warren: ") {
			n++
		}
	}
	return n
}

// TestCommands runs every command of the table with --help and -h, with a
// flag it does not have, and with a missing or extra argument, and checks
// the exit status and output that `warren help` documents: help on
// standard output and status 0; a usage error as one "warren: " line on
// standard error, nothing on standard output, status 2. No case gets as
// far as touching the host.
func TestCommands(t *testing.T) {
	t.Setenv("WG_QUICK_USERSPACE_IMPLEMENTATION", "")
	// A malformed command line for each command: an argument missing, one
	// too many or one of the wrong kind.
	badArgs := map[string]struct {
		args []string
		want string
	}{
		"up":         {nil, "up takes one config file"},
		"down":       {nil, "warren down NAME"},
		"reload":     {nil, "warren reload NAME"},
		"mesh":       {nil, "mesh takes one config file"},
		"show":       {[]string{"wg0", "bogus-view"}, `unknown view "bogus-view"`},
		"demo":       {[]string{"extra"}, `unexpected argument "extra"`},
		"bench":      {[]string{"extra"}, `unexpected argument "extra"`},
		"link":       {nil, "no subcommand"},
		"genkey":     {[]string{"extra"}, "takes no arguments"},
		"pubkey":     {[]string{"extra"}, "takes no arguments"},
		"genpsk":     {[]string{"extra"}, "takes no arguments"},
		"userspace":  {nil, "warren userspace [-f] IFACE"},
		"completion": {nil, "want a shell"},
		"version":    {[]string{"extra"}, "takes no arguments"},
		"help":       {[]string{"bogus"}, `unknown command "bogus"`},
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			for _, h := range []string{"--help", "-h", "-help"} {
				// Help wins wherever it stands, also after an argument.
				for _, args := range [][]string{{c.name, h}, {c.name, "wg0", h}} {
					stdout, stderr, code := runMain(t, args...)
					if code != exitOK || stdout != c.help || stderr != "" {
						t.Errorf("warren %s: status %d, stdout %q, stderr %q; want 0, the help, nothing", strings.Join(args, " "), code, stdout, stderr)
					}
				}
			}
			if !strings.HasPrefix(c.help, "usage: warren "+c.name) {
				t.Errorf("help of %s does not start with its usage line:\n%s", c.name, c.help)
			}
			if stdout, _, code := runMain(t, "help", c.name); code != exitOK || stdout != c.help {
				t.Errorf("warren help %s: status %d, stdout %q; want 0 and the help", c.name, code, stdout)
			}

			stdout, stderr, code := runMain(t, c.name, "--no-such-flag")
			if code != exitUsage || stdout != "" || errorLines(stderr) != 1 || strings.Count(stderr, "no-such-flag") != 1 {
				t.Errorf("warren %s --no-such-flag: status %d, stdout %q, stderr %q; want 2, nothing, the error once", c.name, code, stdout, stderr)
			}

			bad, ok := badArgs[c.name]
			if !ok {
				t.Fatalf("no malformed command line for %q: add one to badArgs", c.name)
			}
			args := append([]string{c.name}, bad.args...)
			stdout, stderr, code = runMain(t, args...)
			if code != exitUsage || stdout != "" || errorLines(stderr) != 1 || !strings.Contains(stderr, bad.want) {
				t.Errorf("warren %s: status %d, stdout %q, stderr %q; want 2, nothing, one error with %q", strings.Join(args, " "), code, stdout, stderr, bad.want)
			}
		})
	}
}

// TestCommandLine covers what is not a command: no arguments, help, the
// version, unknown commands and flags, and flags that must never be taken
// for an interface name.
func TestCommandLine(t *testing.T) {
	t.Setenv("WG_QUICK_USERSPACE_IMPLEMENTATION", "")
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string // a prefix
		wantStderr string // a substring
	}{
		{nil, exitUsage, "", "warren: usage: no command"},
		{[]string{"help"}, exitOK, "usage: warren <command>", ""},
		{[]string{"--help"}, exitOK, "usage: warren <command>", ""},
		{[]string{"-h"}, exitOK, "usage: warren <command>", ""},
		{[]string{"--version"}, exitOK, "warren ", ""},
		{[]string{"version"}, exitOK, "warren ", ""},
		{[]string{"bogus"}, exitUsage, "", `unknown command "bogus"`},
		{[]string{"--bogus"}, exitUsage, "", "unknown flag --bogus"},
		{[]string{"down", "--json"}, exitUsage, "", "flag provided but not defined: --json"},
		{[]string{"show", "--bogus", "wg0"}, exitUsage, "", "flag provided but not defined: -bogus"},
		{[]string{"show", "-x"}, exitUsage, "", "flag provided but not defined: -x"},
		{[]string{"show", "wg0", "transfer", "--json"}, exitUsage, "", "takes no view"},
		{[]string{"show", "interfaces", "--json"}, exitUsage, "", "takes no view and no --json"},
		{[]string{"show", "bad/name"}, exitUsage, "", "not an interface name"},
		{[]string{"show", "--json", "wtnone0"}, exitFailure, "", "show wtnone0: not up"},
		{[]string{"show", "wtnone0", "--json"}, exitFailure, "", "show wtnone0: not up"},
		{[]string{"link", "add", "veth"}, exitUsage, "", "want KIND NAME"},
		{[]string{"completion", "zsh"}, exitUsage, "", `unknown shell "zsh"`},
		{[]string{"help", "up", "down"}, exitUsage, "", "at most one command"},
		{[]string{"genkey", "--"}, exitUsage, "", "takes no arguments"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, code := runMain(t, tc.args...)
			if code != tc.wantCode || !strings.HasPrefix(stdout, tc.wantStdout) || !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("warren %q: status %d, stdout %q, stderr %q; want %d, stdout starting %q, stderr with %q",
					tc.args, code, stdout, stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
			if code != exitOK && errorLines(stderr) != 1 {
				t.Errorf("warren %q printed %d error lines, want 1:\n%s", tc.args, errorLines(stderr), stderr)
			}
		})
	}
}

// TestHelpDocumentsExitStatus checks that `warren help` lists every command
// and the exit statuses main returns.
func TestHelpDocumentsExitStatus(t *testing.T) {
	stdout, _, _ := runMain(t, "help")
	for _, want := range []string{"0  success", "1  a runtime error", "2  a malformed command line"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("warren help lacks %q:\n%s", want, stdout)
		}
	}
	for _, c := range commands {
		if !strings.Contains(stdout, "\n  "+c.name) {
			t.Errorf("warren help does not list %s", c.name)
		}
	}
	if exitOK != 0 || exitFailure != 1 || exitUsage != 2 {
		t.Errorf("exit statuses %d, %d, %d; the help says 0, 1, 2", exitOK, exitFailure, exitUsage)
	}
}

func TestVersion(t *testing.T) {
	plat := " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"release", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "8f42123abc"}, {Key: "vcs.time", Value: "2026-12-02T13:00:00Z"}}},
			true, "warren v1.2.3 (commit 8f42123abc, 2026-12-02T13:00:00Z)" + plat},
		{"dirty tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "8f42123abc"}, {Key: "vcs.modified", Value: "true"}}},
			true, "warren (devel) (commit 8f42123abc, modified)" + plat},
		{"no VCS", &debug.BuildInfo{}, true, "warren (devel) (commit unknown)" + plat},
		{"no build info", nil, false, "warren (unknown)" + plat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := version(tc.bi, tc.ok); got != tc.want {
				t.Errorf("version = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestVersionOfBinary builds warren from this checkout and checks that
// --version names the commit.
func TestVersionOfBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "warren")
	// -buildvcs=true: a GOFLAGS of -buildvcs=false (set on some machines)
	// would leave the commit out.
	if out, err := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("warren --version: %v", err)
	}
	if want := "commit " + strings.TrimSpace(string(rev)); !strings.Contains(string(out), want) {
		t.Errorf("warren --version = %q, want it to contain %q", out, want)
	}
}

var update = flag.Bool("update", false, "rewrite dist/warren.bash from the command table")

// TestCompletionFile checks that dist/warren.bash is what `warren
// completion bash` prints (go test -run TestCompletionFile -update writes it).
func TestCompletionFile(t *testing.T) {
	path := filepath.Join("..", "..", "dist", "warren.bash")
	if *update {
		if err := os.WriteFile(path, []byte(completionScript()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(got), completionScript()); diff != "" {
		t.Errorf("%s is stale; run go test ./cmd/warren -run TestCompletionFile -update (-file +generated):\n%s", path, diff)
	}
}

// TestCompletion loads the script into bash and completes command lines
// against a socket and a config directory of the test's own.
func TestCompletion(t *testing.T) {
	bash := requireBinary(t, "bash")
	dir := t.TempDir()
	sockDir, confDir := filepath.Join(dir, "run"), filepath.Join(dir, "etc")
	for _, d := range []string{sockDir, confDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"wg0", "wg1"} {
		listenUnix(t, filepath.Join(sockDir, name+".sock"))
	}
	os.WriteFile(filepath.Join(sockDir, "stale.sock"), nil, 0o600) // not a socket: not running
	os.WriteFile(filepath.Join(confDir, "office.conf"), nil, 0o600)
	script := filepath.Join(dir, "warren.bash")
	if err := os.WriteFile(script, []byte(completionScript()), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		line string // the words; the last one is being completed
		want string // COMPREPLY, sorted, space-separated
	}{
		{"warren sh", "show"},
		{"warren --v", "--version"},
		{"warren ", "--help --version " + strings.Join(sortedNames(), " ")},
		{"warren show ", "all interfaces wg0 wg1"},
		{"warren show --json w", "wg0 wg1"},
		{"warren show wg0 tr", "transfer"},
		{"warren show wg0 l", "latest-handshakes listen-port"},
		{"warren show --j", "--json"},
		{"warren down ", "wg0 wg1"},
		{"warren down wg0 ", ""},
		{"warren up ", "office"},
		{"warren up --log-level d", "debug"},
		{"warren up --log-level debug of", "office"},
		{"warren link ", "add del help ls"},
		{"warren link add ve", "veth"},
		{"warren help sh", "show"},
		{"warren completion ", "bash"},
		{"warren bench --run", "--runs"},
	}
	for _, tc := range tests {
		t.Run(tc.line, func(t *testing.T) {
			words := strings.Split(tc.line, " ")
			var quoted []string
			for _, w := range words {
				quoted = append(quoted, "'"+w+"'")
			}
			prog := "cd " + dir + " && source " + script + " && _warren_sockdir=" + sockDir + " _warren_confdir=" + confDir +
				" && COMP_WORDS=(" + strings.Join(quoted, " ") + ") && COMP_CWORD=" + strconv.Itoa(len(words)-1) +
				` && _warren && printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '`
			cmd := exec.Command(bash, "--norc", "-c", prog)
			cmd.Env = append(os.Environ(), "LC_ALL=C")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tc.want {
				t.Errorf("completing %q = %q, want %q", tc.line, got, tc.want)
			}
		})
	}
}

// sortedNames returns the command names as sort(1) orders them in the C
// locale the test runs bash in (bytewise).
func sortedNames() []string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	slices.Sort(names)
	return names
}

// requireBinary returns the path of the program name, and skips the test
// where it is not installed (fails under CI=true, where it must be).
func requireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true: a missing tool is a failure)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// listenUnix listens on a Unix socket at path until the test ends.
func listenUnix(t testing.TB, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
}

// TestManPage checks that warren(8) documents every command, the exit
// statuses, and that groff reads it without warnings.
func TestManPage(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "warren.8")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{".TH WARREN 8", ".SH EXIT STATUS", ".SH FILES", ".SH SEE ALSO"} {
		if !strings.Contains(page, want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	for _, c := range commands {
		if !strings.Contains(page, "\n.B "+c.name+"\n") && !strings.Contains(page, "\n.B "+c.name+" ") {
			t.Errorf("%s does not document the command %s (want a line .B %s)", path, c.name, c.name)
		}
	}
	for _, v := range showViews {
		if !strings.Contains(strings.ReplaceAll(page, `\-`, "-"), v) {
			t.Errorf("%s does not mention show's view %s", path, v)
		}
	}
	groff := requireBinary(t, "groff")
	out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff -man -ww %s: %v\n%s", path, err, out)
	}
}
