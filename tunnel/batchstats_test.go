package tunnel

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestBatchAverage(t *testing.T) {
	tests := []struct {
		name         string
		earlier, now batchSnapshot
		want         float64
	}{
		{"no calls", batchSnapshot{3, 30}, batchSnapshot{3, 30}, 0},
		{"from zero", batchSnapshot{}, batchSnapshot{4, 180}, 45},
		{"since earlier", batchSnapshot{2, 10}, batchSnapshot{4, 100}, 45},
	}
	for _, tc := range tests {
		if got := tc.now.average(tc.earlier); got != tc.want {
			t.Errorf("%s: average = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestLogBatchStats(t *testing.T) {
	var out bytes.Buffer
	e := &Engine{log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	var prev batchLog
	e.logBatchStats(&prev)
	if out.Len() != 0 {
		t.Errorf("logged without traffic: %q", out.String())
	}
	e.batches.adapterRead.add(46)
	e.batches.adapterRead.add(44)
	e.logBatchStats(&prev)
	if s := out.String(); !strings.Contains(s, "adapter_reads=2") || !strings.Contains(s, "packets_per_read=45") {
		t.Errorf("log = %q, want 2 reads of 45 packets", s)
	}
	out.Reset()
	e.logBatchStats(&prev)
	if out.Len() != 0 {
		t.Errorf("logged again without new traffic: %q", out.String())
	}
}
