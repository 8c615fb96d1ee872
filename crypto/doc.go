// Package crypto owns everything cryptographic in the WireGuard protocol:
// keys, the Noise_IKpsk2 handshake, MAC1/MAC2 and cookies, transport data
// sealing and opening, the replay window and TAI64N timestamps.
//
// It is pure: it does no I/O, starts no goroutines and reads no clock; time
// and randomness are passed in by the caller.
package crypto
