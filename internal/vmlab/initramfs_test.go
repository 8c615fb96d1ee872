package vmlab

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolveModules(t *testing.T) {
	const dep = `kernel/drivers/net/wireguard/wireguard.ko: kernel/lib/crypto/libchacha.ko kernel/net/ipv4/udp_tunnel.ko
kernel/lib/crypto/libchacha.ko:
kernel/net/ipv4/udp_tunnel.ko:
kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko:
kernel/net/sched/sch_netem.ko:
`
	const builtin = "kernel/net/unix/unix.ko\nkernel/net/ipv6/ipv6.ko\n"
	tests := []struct {
		name    string
		modules []string
		want    []string
		wantErr bool
	}{
		{"deps first", []string{"wireguard"}, []string{"kernel/lib/crypto/libchacha.ko", "kernel/net/ipv4/udp_tunnel.ko", "kernel/drivers/net/wireguard/wireguard.ko"}, false},
		{"shared deps once", []string{"virtio_net", "virtio"}, []string{"kernel/net/core/failover.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/net/virtio_net.ko"}, false},
		{"dash and builtin", []string{"sch-netem", "ipv6"}, []string{"kernel/net/sched/sch_netem.ko"}, false},
		{"unknown", []string{"nosuch"}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveModules(strings.NewReader(dep), strings.NewReader(builtin), tc.modules)
			if (err != nil) != tc.wantErr {
				t.Fatalf("resolveModules(%v) error = %v, want error %v", tc.modules, err, tc.wantErr)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("resolveModules(%v) (-got +want):\n%s", tc.modules, diff)
			}
		})
	}
}

// TestCPIO checks the newc layout: 110-byte headers, names and data padded
// to 4 bytes, and the trailer.
func TestCPIO(t *testing.T) {
	var b bytes.Buffer
	c := newCPIO(&b)
	c.Dir("dev")
	c.File("init", 0o755, []byte("hello"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if b.Len()%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", b.Len())
	}
	// dev: 110 + "dev\0" = 114, padded to 116.
	if got, want := out[116:122], "070701"; got != want {
		t.Errorf("second header magic = %q, want %q", got, want)
	}
	// The file's mode and size fields.
	if got, want := out[116+14:116+22], "000081ed"; got != want {
		t.Errorf("file mode = %q, want %q", got, want)
	}
	if got, want := out[116+54:116+62], "00000005"; got != want {
		t.Errorf("file size = %q, want %q", got, want)
	}
	if !strings.Contains(out, "hello") || !strings.Contains(out, "TRAILER!!!\x00") {
		t.Errorf("archive lacks the data or the trailer: %q", out)
	}
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"vmlinuz-6.1.0-57-amd64", "vmlinuz-6.1.0-100-amd64", true},
		{"vmlinuz-6.1.0-100-amd64", "vmlinuz-6.1.0-57-amd64", false},
		{"vmlinuz-6.1.0-48-amd64", "vmlinuz-6.12.0-1-amd64", true},
		{"vmlinuz-6.1.0-48-amd64", "vmlinuz-6.1.0-48-amd64", false},
		{"vmlinuz-6.1.0-48-amd64", "vmlinuz-6.1.0-48-cloud-amd64", true},
	}
	for _, tc := range tests {
		if got := versionLess(tc.a, tc.b); got != tc.want {
			t.Errorf("versionLess(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
