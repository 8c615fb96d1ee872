package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Dir is where `warren up NAME` looks for NAME.conf, as wg-quick does.
const Dir = "/etc/wireguard"

// maxNameLen is the longest interface name Linux takes (IFNAMSIZ - 1).
const maxNameLen = 15 // bytes

// NameRule describes a valid interface name, for error and usage messages.
const NameRule = `1-15 bytes, not "." or "..", without '/', ':', '%' or white space`

// ValidName reports whether name is a valid interface name. It is the one
// rule every part of warren applies (config file names, `warren up` and
// `warren userspace` arguments, control sockets, `warren link`): the
// kernel's dev_valid_name (net/core/dev.c) takes 1 to 15 bytes other than
// "." and "..", without '/', ':' or white space. ValidName also refuses
// NUL, which would end the name early, and '%', which the kernel reads as
// a template to fill in ("wg%d" becomes wg0), so the name asked for would
// not be the name made. It accepts more than wg-quick's
// [a-zA-Z0-9_=+.-]{1,15}: names such as "wg@home" or "vpn#1".
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > maxNameLen || name == "." || name == ".." {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case 0, '/', ':', '%':
			return false
		case ' ', '\t', '\n', '\v', '\f', '\r', 0xa0: // the kernel's isspace (Latin-1)
			return false
		}
	}
	return true
}

// nameFromPath returns the interface name a config file path stands for:
// the base name without ".conf" (/etc/wireguard/wg0.conf → wg0). It fails
// with an *Error wrapping ErrInterfaceName when that is not a valid name.
func nameFromPath(path string) (string, error) {
	name, ok := strings.CutSuffix(filepath.Base(path), ".conf")
	if !ok || !ValidName(name) {
		return "", &Error{File: path, Err: ErrInterfaceName}
	}
	return name, nil
}

// PathFor maps the argument of `warren up ARG` to a config file and an
// interface name. An argument that ends in ".conf" or contains a '/' is a
// path, and the interface is named after the file; any other argument is
// an interface name, read from Dir/NAME.conf.
//
// wg-quick checks the other way round (an argument that is a valid name is
// always a name, so `wg-quick up wg0.conf` reads /etc/wireguard/wg0.conf.conf);
// warren treats it as the file ./wg0.conf.
func PathFor(arg string) (path, name string, err error) {
	if strings.HasSuffix(arg, ".conf") || strings.Contains(arg, "/") {
		name, err := nameFromPath(arg)
		if err != nil {
			return "", "", err
		}
		return arg, name, nil
	}
	if !ValidName(arg) {
		return "", "", fmt.Errorf("%q is neither an interface name (%s) nor a path to NAME.conf", arg, NameRule)
	}
	return Dir + "/" + arg + ".conf", arg, nil
}
