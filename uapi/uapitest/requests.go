package uapitest

import (
	"fmt"
	"strings"
)

// Keys used by the sessions, in UAPI hex.
const (
	KeyA = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceae4f2e0fa70" // a private key
	KeyB = "662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58"
	KeyC = "e818b58db5274087fcc1be5dc728cf53d3b5726b4cef6b9bab8f8f8c2452c25c"
	KeyZ = "0000000000000000000000000000000000000000000000000000000000000000"
)

// KeyN returns a distinct public key for peer i, in UAPI hex.
func KeyN(i int) string { return fmt.Sprintf("%064x", i+1) }

// PeerBlock returns the set lines of a peer whose allowed IPs are replaced
// by n prefixes made by ip(i).
func PeerBlock(pub string, n int, ip func(i int) string) string {
	var b strings.Builder
	b.WriteString("public_key=" + pub + "\nreplace_allowed_ips=true\n")
	for i := range n {
		b.WriteString("allowed_ip=" + ip(i) + "\n")
	}
	return b.String()
}
