package vmwire

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConnRoundTrip writes requests and reads them back, skipping the noise
// a freshly opened serial port may carry.
func TestConnRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("\x00\x00garbage\n\n")
	w := NewConn(&buf)
	want := []Request{{ID: 1, Args: []string{"ping", "198.18.0.1", "3"}}, {Cancel: 1}}
	for _, r := range want {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	var got []Request
	r := NewConn(&buf)
	for {
		var req Request
		if err := r.Read(&req); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		got = append(got, req)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("read back (-got +want):\n%s", diff)
	}
}

func TestConnReadBadJSON(t *testing.T) {
	c := NewConn(struct {
		io.Reader
		io.Writer
	}{strings.NewReader("{not json\n"), io.Discard})
	var r Response
	if err := c.Read(&r); err == nil {
		t.Errorf("Read of a broken line = %+v, want an error", r)
	}
}
