package crypto

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
)

// Fuzz targets for every parser of network input and for seal/open. Each
// is seeded with valid messages; the property is "no panic, and a failure
// changes no state". CI runs each for a few seconds (.ci/fuzz-crypto).

// fuzzFixture holds identities and valid messages shared by the targets.
type fuzzFixture struct {
	a, b    testPeer
	init    []byte // a → b initiation created by a fresh a.hs with rand seed 1
	resp    []byte // b → a response to init
	cookie  []byte // b's cookie reply to init, for srcA
	data    []byte // a sealed data message a → b (counter 0, 20 bytes)
	ki, kr  *Keypair
	srcAddr netip.AddrPort
}

var fixture = sync.OnceValue(func() *fuzzFixture {
	tb := &testing.T{}
	f := &fuzzFixture{srcAddr: srcA}
	f.a, f.b = testPair(tb, 61, PresharedKey{})
	f.init = make([]byte, InitiationSize)
	hs := f.freshInitiator(f.init)
	bh := NewHandshake(f.b.id, f.a.id.PublicKey(), PresharedKey{})
	if _, err := f.b.id.ConsumeInitiation(f.init, t0, lookup(bh)); err != nil {
		panic(err)
	}
	f.resp = make([]byte, ResponseSize)
	if err := bh.CreateResponse(f.resp, t0, newTestRand(2), 0x2222); err != nil {
		panic(err)
	}
	f.cookie = make([]byte, CookieReplySize)
	if err := f.b.id.CreateCookieReply(f.cookie, f.init, srcA, t0, newTestRand(3)); err != nil {
		panic(err)
	}
	if err := hs.ConsumeResponse(f.resp); err != nil {
		panic(err)
	}
	f.ki, _ = hs.BeginSession(t0)
	f.kr, _ = bh.BeginSession(t0)
	f.data = make([]byte, 64)
	copy(f.data[DataHeaderSize:], "twenty bytes of data")
	n, _ := f.ki.Seal(f.data, 20, 1420)
	f.data = f.data[:n]
	return f
})

// freshInitiator returns a new Handshake of a towards b that has just
// written the same initiation into dst (deterministic rand and clock).
func (f *fuzzFixture) freshInitiator(dst []byte) *Handshake {
	hs := NewHandshake(f.a.id, f.b.id.PublicKey(), PresharedKey{})
	if err := hs.CreateInitiation(dst, t0, newTestRand(1), 0x1111); err != nil {
		panic(err)
	}
	return hs
}

func FuzzParse(f *testing.F) {
	fx := fixture()
	for _, m := range [][]byte{fx.init, fx.resp, fx.cookie, fx.data, nil, {1}, {4, 0, 0, 0}} {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		typ, err := Parse(msg)
		ReceiverIndex(msg)
		SenderIndex(msg)
		if err != nil {
			return
		}
		want := map[MessageType]int{MessageInitiation: InitiationSize, MessageResponse: ResponseSize, MessageCookieReply: CookieReplySize}[typ]
		if (typ == MessageData && len(msg) < DataOverhead) || (want != 0 && len(msg) != want) || msg[1]|msg[2]|msg[3] != 0 {
			t.Fatalf("Parse accepted %d bytes as %v", len(msg), typ)
		}
	})
}

func FuzzConsumeInitiation(f *testing.F) {
	fx := fixture()
	f.Add(fx.init)
	f.Add(fx.resp)
	f.Fuzz(func(t *testing.T, msg []byte) {
		hs := NewHandshake(fx.b.id, fx.a.id.PublicKey(), PresharedKey{})
		before := stateOf(hs)
		_, err := fx.b.id.ConsumeInitiation(msg, t0, lookup(hs))
		if err != nil && stateOf(hs) != before {
			t.Fatalf("failed ConsumeInitiation (%v) changed state", err)
		}
		if err == nil && !bytes.Equal(msg, fx.init) {
			// Only mac2 is unauthenticated here.
			if !bytes.Equal(msg[:InitiationSize-macSize], fx.init[:InitiationSize-macSize]) {
				t.Fatalf("forged initiation consumed")
			}
		}
		fx.b.id.CheckMAC1(msg)
		fx.b.id.CheckMAC2(msg, fx.srcAddr, t0)
	})
}

func FuzzConsumeResponse(f *testing.F) {
	fx := fixture()
	f.Add(fx.resp)
	f.Add(fx.init[:ResponseSize])
	f.Fuzz(func(t *testing.T, msg []byte) {
		hs := fx.freshInitiator(make([]byte, InitiationSize))
		before := stateOf(hs)
		err := hs.ConsumeResponse(msg)
		if err != nil && stateOf(hs) != before {
			t.Fatalf("failed ConsumeResponse (%v) changed state", err)
		}
		if err == nil && !bytes.Equal(msg[:ResponseSize-macSize], fx.resp[:ResponseSize-macSize]) {
			t.Fatalf("forged response consumed")
		}
	})
}

func FuzzConsumeCookieReply(f *testing.F) {
	fx := fixture()
	f.Add(fx.cookie)
	f.Add(fx.data)
	f.Fuzz(func(t *testing.T, msg []byte) {
		hs := fx.freshInitiator(make([]byte, InitiationSize))
		before := stateOf(hs)
		err := hs.ConsumeCookieReply(msg, t0)
		if err != nil && stateOf(hs) != before {
			t.Fatalf("failed ConsumeCookieReply (%v) changed state", err)
		}
		// The receiver index is only for lookup; nonce and box are
		// authenticated.
		if err == nil && !bytes.Equal(msg[8:], fx.cookie[8:]) {
			t.Fatalf("forged cookie reply consumed")
		}
		// The responder side takes arbitrary messages too.
		var reply [CookieReplySize]byte
		fx.b.id.CreateCookieReply(reply[:], msg, fx.srcAddr, t0, newTestRand(4))
	})
}

func FuzzOpen(f *testing.F) {
	fx := fixture()
	f.Add(fx.data)
	f.Add(fx.data[:DataOverhead])
	f.Add(fx.init)
	f.Fuzz(func(t *testing.T, msg []byte) {
		m := bytes.Clone(msg)
		pt, counter, err := fx.kr.Open(m)
		if err != nil {
			return
		}
		if !bytes.Equal(msg, fx.data) || counter != 0 || string(pt[:20]) != "twenty bytes of data" {
			t.Fatalf("forged data opened: counter %d", counter)
		}
	})
}

func FuzzSealOpen(f *testing.F) {
	f.Add([]byte("hello"), 1420)
	f.Add([]byte{}, 0)
	f.Add(bytes.Repeat([]byte{0xff}, 1500), 1420)
	f.Add([]byte("x"), -3)
	f.Fuzz(func(t *testing.T, payload []byte, mtu int) {
		fx := fixture()
		buf := make([]byte, DataOverhead+PaddedSize(len(payload), mtu))
		copy(buf[DataHeaderSize:], payload)
		n, err := fx.ki.Seal(buf, len(payload), mtu)
		if err != nil {
			t.Fatalf("Seal(%d bytes, mtu %d): %v", len(payload), mtu, err)
		}
		if (n-DataOverhead)%PaddingMultiple != 0 && n-DataOverhead != max(len(payload), mtu) {
			t.Fatalf("Seal(%d bytes, mtu %d) = %d: bad padding", len(payload), mtu, n)
		}
		pt, counter, err := fx.kr.Open(buf[:n])
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(pt[:len(payload)], payload) || !isZero(pt[len(payload):]) {
			t.Fatalf("round trip changed the payload")
		}
		if !fx.kr.AcceptCounter(counter) {
			t.Fatalf("fresh counter %d refused", counter)
		}
	})
}
