package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// TestLogFormat: --log-format json writes one JSON object per line with
// the usual keys; text is the default; anything else is a usage error.
func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLoggerFormat(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("up", "interface", "wg0", "peers", 2)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("--log-format json wrote %q: %v", buf.String(), err)
	}
	if rec["msg"] != "up" || rec["interface"] != "wg0" || rec["level"] != "INFO" || rec["peers"] != 2.0 {
		t.Errorf("JSON record = %v, want msg, level, interface and peers", rec)
	}
	if _, err := newLoggerFormat(&buf, "info", "xml"); !errors.Is(err, errUsage) {
		t.Errorf("--log-format xml: %v, want a usage error", err)
	}
	if _, err := newLoggerFormat(&buf, "loud", "text"); !errors.Is(err, errUsage) {
		t.Errorf("--log-level loud: %v, want a usage error", err)
	}
}
