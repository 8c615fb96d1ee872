package lifecycle_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/warrenvpn/warren/internal/leakcheck"
	"github.com/warrenvpn/warren/lifecycle"
)

// TestLogsWhatChanged: at Info, Up logs each address, route, rule, sysctl,
// the nftables table and DNS it added, and Close each it removed, so that a
// person reading the log knows what warren did to the host.
func TestLogsWhatChanged(t *testing.T) {
	leakcheck.Check(t)
	var buf bytes.Buffer
	f := newFakes(-1)
	opts := f.options(t.TempDir())
	opts.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tun, err := lifecycle.Up(t.Context(), testConfig(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	upLog := buf.String()
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	closeLog := strings.TrimPrefix(buf.String(), upLog)
	for _, want := range []string{
		`msg="added address" interface=wt0 address=198.19.0.1/24`,
		`msg="added address" interface=wt0 address=fd00:7761:1::1/64`,
		`msg="added route" interface=wt0 route="0.0.0.0/0 table 51820"`,
		`msg="added rule" rule="-4 pref 32765 not fwmark 0xca6c lookup 51820"`,
		`msg="added rule" rule="-6 pref 32764 lookup main suppress_prefixlength 0"`,
		`msg="set sysctl" key=net.ipv4.conf.all.src_valid_mark value=1`,
		`msg="added nft table" table=warren-wt0`,
		`msg="added DNS" interface=wt0`,
	} {
		if !strings.Contains(upLog, want) {
			t.Errorf("Up's log lacks %s:\n%s", want, upLog)
		}
	}
	for _, want := range []string{
		`msg="removed address" interface=wt0 address=198.19.0.1/24`,
		`msg="removed route" interface=wt0 route="::/0 table 51820"`,
		`msg="removed rule" rule="-4 pref 32765 not fwmark 0xca6c lookup 51820"`,
		`msg="restored sysctl" key=net.ipv4.conf.all.src_valid_mark`,
		`msg="removed nft table" table=warren-wt0`,
		`msg="removed DNS" interface=wt0`,
	} {
		if !strings.Contains(closeLog, want) {
			t.Errorf("Close's log lacks %s:\n%s", want, closeLog)
		}
	}
}
