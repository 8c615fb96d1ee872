package config

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that every mistake is an
// *Error naming the file, and that every file it accepts prints as a file
// that parses back to the same Config and prints the same again.
// Run it with `go test -fuzz FuzzParse ./config` (.ci/fuzz-config).
func FuzzParse(f *testing.F) {
	for _, tc := range goodFiles {
		f.Add(tc.text)
	}
	for _, tc := range badFiles {
		if len(tc.text) < 4096 {
			f.Add(tc.text)
		}
	}
	if b, err := os.ReadFile("testdata/wg0.conf"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse("fuzz.conf", strings.NewReader(text))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "fuzz.conf" {
				t.Fatalf("Parse() error = %v (%T), want an *Error for fuzz.conf", err, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("Parse() error = %q, want one line", err)
			}
			return
		}
		printed := c.String()
		c2, err := Parse("fuzz.conf", strings.NewReader(printed))
		if err != nil {
			t.Fatalf("Parse(String()) error = %v\ninput:\n%s\nprinted:\n%s", err, text, printed)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("Parse(String()) = %+v, want %+v\nprinted:\n%s", c2, c, printed)
		}
		if again := c2.String(); again != printed {
			t.Fatalf("String() after a round trip = %q, want %q", again, printed)
		}
	})
}
