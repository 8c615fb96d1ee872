package config

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel causes that callers may test with errors.Is on an *Error.
var (
	ErrUnknownKey     = errors.New("unknown key")
	ErrUnknownSection = errors.New("unknown section")
	ErrOutsideSection = errors.New("key outside a section")
	ErrSyntax         = errors.New("expected Key = Value")
	ErrDuplicate      = errors.New("duplicate")
	ErrMissing        = errors.New("missing")
	ErrNotSupported   = errors.New("not supported")
	ErrEmpty          = errors.New("empty value")
	ErrInterfaceName  = errors.New("the file name must be a valid interface name (" + NameRule + ") followed by .conf")
)

// Error is a mistake in a config file. Parse and Load return the first one
// they find as an *Error. It prints as
//
//	wg0.conf:7: AllowedIPs: "10.0.0/24": invalid prefix
//
// leaving out the line when it is 0, the key when it is "" and the value
// when it is "".
type Error struct {
	File string // the file name given to Parse, or the path given to Load
	Line int    // 1-based; 0 when the mistake belongs to no single line
	// Key is the key's canonical name (AllowedIPs, even when the file says
	// allowedips), an unknown key as written, or a section header.
	Key string
	// Value is the offending value as written. It is "" for errors about a
	// key rather than its value, and for PrivateKey and PresharedKey, whose
	// values are secret.
	Value string
	Err   error // the cause
}

// Error formats e as file:line: key: "value": cause.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	if e.Value != "" {
		b.WriteString(strconv.Quote(e.Value))
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }
