package config

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestParseThreads checks warren's Threads key: a number of pipelines from
// 1 to MaxThreads, unset by default, printed back only when set, and an
// error naming file, line and key otherwise.
func TestParseThreads(t *testing.T) {
	c, err := Parse("wg0.conf", strings.NewReader(minimal))
	if err != nil || c.Interface.Threads != 0 {
		t.Fatalf("no Threads: %v, %v; want 0", c.Interface.Threads, err)
	}
	if strings.Contains(c.String(), "Threads") {
		t.Errorf("printed an unset Threads:\n%s", c)
	}
	for _, v := range []string{"1", "4", "64"} {
		c, err := Parse("wg0.conf", strings.NewReader(minimal+"threads = "+v+"\n"))
		if err != nil {
			t.Fatalf("Threads = %s: %v", v, err)
		}
		if got := c.Interface.Threads; v != strconv.Itoa(got) {
			t.Errorf("Threads = %s parsed as %d", v, got)
		}
		back, err := Parse("wg0.conf", strings.NewReader(c.String()))
		if err != nil || back.Interface.Threads != c.Interface.Threads {
			t.Errorf("Threads = %s printed and parsed back: %v, %v", v, back.Interface.Threads, err)
		}
	}
	for _, v := range []string{"0", "-1", "65", "two", "1.5", "0x2"} {
		_, err := Parse("wg0.conf", strings.NewReader(minimal+"Threads = "+v+"\n"))
		want := `wg0.conf:3: Threads: "` + v + `": invalid threads: want a number from 1 to 64`
		if err == nil || err.Error() != want {
			t.Errorf("Threads = %s: error %v, want %s", v, err, want)
		}
	}
}

// TestParseThreadsTAP: Mode = tap runs one pipeline, so Threads above 1 is
// an error naming its line, wherever Mode comes; Threads = 1 is accepted.
func TestParseThreadsTAP(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{minimal + "Mode = tap\nThreads = 1\n", ""},
		{minimal + "Mode = tap\nThreads = 2\n", `wg0.conf:4: Threads: "2": Mode = tap runs one pipeline (a multi-queue TAP is not done): want 1 or no Threads`},
		{minimal + "Threads = 4\nMode = tap\n", `wg0.conf:3: Threads: "4": Mode = tap runs one pipeline (a multi-queue TAP is not done): want 1 or no Threads`},
		{minimal + "Mode = tun\nThreads = 4\n", ""},
	} {
		_, err := Parse("wg0.conf", strings.NewReader(c.text))
		if got := fmt.Sprint(err); (c.want == "" && err != nil) || (c.want != "" && got != c.want) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
	}
}
