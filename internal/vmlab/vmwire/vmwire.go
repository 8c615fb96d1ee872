// Package vmwire is the command protocol between the vmlab host and the
// guest's init: one JSON object per line in each direction over the guest's
// virtio-serial port.
//
// The host sends Requests; the guest answers each with exactly one Response
// carrying the same ID, in completion order, so several requests may run at
// once. The guest's first line is a Response with ID 0 and Ready set.
package vmwire

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// PortName is the virtio-serial port name the guest looks for.
const PortName = "ctl"

// Request asks the guest to run one command.
type Request struct {
	ID     uint64   `json:"id"`
	Args   []string `json:"args,omitempty"`   // command name and arguments
	Cancel uint64   `json:"cancel,omitempty"` // if not 0, cancels the request with this ID instead
}

// Response is the outcome of one Request.
type Response struct {
	ID     uint64 `json:"id"`
	Ready  bool   `json:"ready,omitempty"` // the guest's greeting, ID 0
	Output string `json:"output,omitempty"`
	Err    string `json:"err,omitempty"` // empty on success
}

// Conn reads and writes the protocol's lines. Write may be called from
// several goroutines at once; Read from one.
type Conn struct {
	r  *bufio.Reader
	mu sync.Mutex // serialises writes of whole lines
	w  io.Writer
}

// NewConn returns a Conn over rw.
func NewConn(rw io.ReadWriter) *Conn {
	return &Conn{r: bufio.NewReaderSize(rw, 1<<16), w: rw}
}

// Write sends v as one line.
func (c *Conn) Write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = c.w.Write(b)
	return err
}

// Read decodes the next line into v. Lines that are not JSON objects, such
// as noise on a freshly opened port, are skipped.
func (c *Conn) Read(v any) error {
	for {
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			return err
		}
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		if err := json.Unmarshal(line, v); err != nil {
			return fmt.Errorf("decode %q: %v", line, err)
		}
		return nil
	}
}
