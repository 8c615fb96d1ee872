package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"strings"

	wgcrypto "github.com/warrenvpn/warren/crypto"
)

// runGenkey prints a new base64 private key, like wg genkey.
func runGenkey(args []string, stdout io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: genkey takes no arguments", errUsage)
	}
	k, err := wgcrypto.NewPrivateKey(rand.Reader)
	if err != nil {
		return err
	}
	defer k.Zero()
	_, err = fmt.Fprintln(stdout, k.String())
	return err
}

// runPubkey reads a base64 private key on stdin and prints its public key,
// like wg pubkey.
func runPubkey(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: pubkey takes no arguments", errUsage)
	}
	// Read at most a little more than one key line so a huge stdin is refused
	// quickly rather than buffered.
	line, err := io.ReadAll(io.LimitReader(bufio.NewReader(stdin), 128))
	if err != nil {
		return fmt.Errorf("read private key: %w", err)
	}
	s := strings.TrimSpace(string(line))
	if s == "" {
		return fmt.Errorf("read private key: no key on standard input")
	}
	k, err := wgcrypto.ParsePrivateKey(s)
	if err != nil {
		return fmt.Errorf("private key on standard input: %w", err)
	}
	defer k.Zero()
	_, err = fmt.Fprintln(stdout, k.PublicKey().String())
	return err
}

// runGenpsk prints a new base64 preshared key, like wg genpsk.
func runGenpsk(args []string, stdout io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: genpsk takes no arguments", errUsage)
	}
	k, err := wgcrypto.NewPresharedKey(rand.Reader)
	if err != nil {
		return err
	}
	defer k.Zero()
	_, err = fmt.Fprintln(stdout, k.String())
	return err
}
