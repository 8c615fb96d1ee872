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
	sort.Sort(sort.Reverse(sort.StringSlice(images)))
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
