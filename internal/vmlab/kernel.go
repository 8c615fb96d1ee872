package vmlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Kernel is a bootable kernel image and its modules directory.
type Kernel struct {
	Image   string // path of the vmlinuz file
	Modules string // its /lib/modules/VERSION directory
	Release string // VERSION
}

// FindKernel returns the newest kernel under /boot whose modules directory
// holds modules.dep, as Debian's linux-image packages install them.
func FindKernel() (*Kernel, error) {
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Slice(images, func(i, j int) bool { return versionLess(images[j], images[i]) })
	for _, img := range images {
		rel := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mods := filepath.Join("/lib/modules", rel)
		if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil {
			continue
		}
		return &Kernel{Image: img, Modules: mods, Release: rel}, nil
	}
	return nil, errors.New("no /boot/vmlinuz-* with a /lib/modules/*/modules.dep (install linux-image-amd64)")
}

// versionLess reports whether a sorts before b when runs of digits compare
// as numbers, so that 6.1.0-100 comes after 6.1.0-57.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		switch {
		case da > 0 && db > 0:
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
		case a[0] != b[0]:
			return a[0] < b[0]
		default:
			a, b = a[1:], b[1:]
		}
	}
	return len(a) < len(b)
}

// digits returns the length of the run of ASCII digits that s starts with.
func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// ResolveModules returns the module files, absolute and in load order, that
// loading names into k needs.
func (k *Kernel) ResolveModules(names []string) ([]string, error) {
	dep, err := os.Open(filepath.Join(k.Modules, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer dep.Close()
	builtin, err := os.Open(filepath.Join(k.Modules, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	defer builtin.Close()
	rel, err := resolveModules(dep, builtin, names)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.Release, err)
	}
	for i, r := range rel {
		rel[i] = filepath.Join(k.Modules, r)
	}
	return rel, nil
}
