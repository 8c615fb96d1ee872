package vmlab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// cpio writes an initramfs in the "newc" cpio format the kernel unpacks
// (Documentation/driver-api/early-userspace/buffer-format.rst):
//
//	+--------+--------+-----+----------+----------+--------------------+
//	| "070701"| 13 fields of 8 hex digits | name\0 pad4 | data pad4 |
//	+--------+--------+-----+----------+----------+--------------------+
//
// The fields are ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
// devminor, rdevmajor, rdevminor, namesize (with the NUL) and check (0).
// The archive ends with an entry named "TRAILER!!!". Errors stick: after
// the first, every call does nothing and Close returns it.
type cpio struct {
	w   *bufio.Writer
	ino int
	off int64
	err error
}

func newCPIO(w io.Writer) *cpio { return &cpio{w: bufio.NewWriterSize(w, 1<<20), ino: 1} }

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
)

func (c *cpio) header(name string, mode, size, rdevMajor, rdevMinor int) {
	if c.err != nil {
		return
	}
	nlink := 1
	if mode&modeDir != 0 {
		nlink = 2
	}
	h := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.ino++
	c.write([]byte(h))
	c.write([]byte(name + "\x00"))
	c.pad()
}

func (c *cpio) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *cpio) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// Dir adds a directory and its missing parents are the caller's job.
func (c *cpio) Dir(name string) { c.header(name, modeDir|0o755, 0, 0, 0) }

// CharDev adds a character device node.
func (c *cpio) CharDev(name string, major, minor int) {
	c.header(name, modeChar|0o600, 0, major, minor)
}

// File adds a regular file with contents data.
func (c *cpio) File(name string, perm int, data []byte) {
	c.header(name, modeFile|perm, len(data), 0, 0)
	c.write(data)
	c.pad()
}

// CopyFile adds the host file src as name.
func (c *cpio) CopyFile(name string, perm int, src string) {
	if c.err != nil {
		return
	}
	b, err := os.ReadFile(src)
	if err != nil {
		c.err = err
		return
	}
	c.File(name, perm, b)
}

// Close writes the trailer and flushes.
func (c *cpio) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

// resolveModules returns the module files (paths relative to the modules
// directory) that loading names needs, each after its dependencies, given
// the contents of modules.dep and modules.builtin. A built-in module needs
// no file; a name found in neither is an error. Names may use '-' or '_'.
func resolveModules(dep, builtin io.Reader, names []string) ([]string, error) {
	deps := map[string][]string{} // module name -> its dependencies' files, then its own file last
	files := map[string]string{}
	s := bufio.NewScanner(dep)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		file, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		n := moduleName(file)
		files[n] = file
		deps[n] = strings.Fields(rest)
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	built := map[string]bool{}
	s = bufio.NewScanner(builtin)
	for s.Scan() {
		built[moduleName(s.Text())] = true
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var visit func(n string) error
	visit = func(n string) error {
		if seen[n] || built[n] {
			return nil
		}
		file, ok := files[n]
		if !ok {
			return fmt.Errorf("kernel module %s: not in modules.dep or modules.builtin", n)
		}
		seen[n] = true
		for _, d := range deps[n] {
			if err := visit(moduleName(d)); err != nil {
				return err
			}
		}
		order = append(order, file)
		return nil
	}
	for _, n := range names {
		if err := visit(strings.ReplaceAll(n, "-", "_")); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleName is the module name of a module file path: its base name
// without .ko (and a compression suffix), with '-' as '_'.
func moduleName(file string) string {
	b := path.Base(strings.TrimSpace(file))
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}
