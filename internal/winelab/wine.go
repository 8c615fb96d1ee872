package winelab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// wineCandidates are where Debian's wine64 package puts the loader: it is
// on PATH only with the wine package's wrapper.
var wineCandidates = []string{"wine64", "/usr/lib/wine/wine64"}

// FindWine returns the path of the 64-bit Wine loader.
func FindWine() (string, error) {
	for _, c := range wineCandidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", errors.New("wine64 not installed (Debian package wine64)")
}

// Prefix is a Wine prefix (a Windows installation in a directory) with the
// Go start-up DLL installed.
type Prefix struct {
	Dir  string
	wine string
	// Command returns a command for name and args; NewPrefix's caller
	// chooses where it runs (a network namespace, say).
	command func(ctx context.Context, name string, args ...string) *exec.Cmd
}

// NewPrefix initialises a prefix in dir (wineboot --init, about 10 s) and
// installs bcryptprimitives.dll. command makes the commands it runs.
func NewPrefix(ctx context.Context, dir string, command func(ctx context.Context, name string, args ...string) *exec.Cmd) (*Prefix, error) {
	wine, err := FindWine()
	if err != nil {
		return nil, err
	}
	p := &Prefix{Dir: dir, wine: wine, command: command}
	if out, err := p.Run(ctx, "wineboot", "--init"); err != nil {
		return nil, fmt.Errorf("wineboot --init: %v\n%s", err, out)
	}
	dll := ForwarderDLL("bcryptprimitives.dll", map[string]string{"ProcessPrng": "advapi32.SystemFunction036"})
	if err := os.WriteFile(filepath.Join(dir, "drive_c", "windows", "system32", "bcryptprimitives.dll"), dll, 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// Run runs a Windows program (a path on this machine, or a Wine built-in
// such as reg) in the prefix and returns its combined output.
func (p *Prefix) Run(ctx context.Context, program string, args ...string) ([]byte, error) {
	cmd := p.command(ctx, p.wine, append([]string{program}, args...)...)
	cmd.Env = append(os.Environ(), "WINEPREFIX="+p.Dir, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=")
	return cmd.CombinedOutput()
}

// Close stops the prefix's wineserver.
func (p *Prefix) Close() error {
	server := filepath.Join(filepath.Dir(p.wine), "wineserver")
	if _, err := os.Stat(server); err != nil {
		server = "wineserver"
	}
	cmd := p.command(context.Background(), server, "-k")
	cmd.Env = append(os.Environ(), "WINEPREFIX="+p.Dir)
	cmd.Run() // fails when the server has already gone
	return nil
}
