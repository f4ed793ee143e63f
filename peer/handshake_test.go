package peer

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/peer/peerpb"
	"github.com/inboxd/inboxd/wire"
)

func mustMarshalHello(t *testing.T) []byte {
	b, err := proto.Marshal(&peerpb.Hello{Node: 5, Nonce: make([]byte, nonceSize), MaxFrame: wire.DefaultMaxFrame})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMarshalProof(t *testing.T, mac []byte) []byte {
	b, err := proto.Marshal(&peerpb.Proof{Mac: mac})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Both sides of the handshake agree when they hold the same secret.
func TestHandshake(t *testing.T) {
	for _, tt := range []struct {
		name          string
		dialer        []byte
		wantListenErr error
		wantDialErr   error
	}{
		{"same secret", secret, nil, nil},
		{"other secret", []byte("not the cluster's secret"), io.EOF, ErrAuth},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe() // the handshake alternates: an unbuffered pipe does
			done := make(chan error, 1)
			var ls session
			go func() {
				var err error
				ls, err = listen(bufio.NewReaderSize(a, wire.DefaultMaxFrame), a, peerKey(secret), 2, wire.DefaultMaxFrame)
				a.Close()
				done <- err
			}()
			ds, err := dial(bufio.NewReaderSize(b, wire.DefaultMaxFrame), b, peerKey(tt.dialer), 1, 8<<10)
			b.Close()
			lerr := <-done
			if !errors.Is(err, tt.wantDialErr) || !errors.Is(lerr, tt.wantListenErr) {
				t.Fatalf("dial: %v, listen: %v; want %v, %v", err, lerr, tt.wantDialErr, tt.wantListenErr)
			}
			if err == nil && (ds != session{node: 2, maxFrame: wire.DefaultMaxFrame} || ls != session{node: 1, maxFrame: 8 << 10}) {
				t.Errorf("sessions %+v, %+v", ds, ls)
			}
		})
	}
}

// FuzzHandshake feeds arbitrary bytes to both sides of the handshake as the
// other side's frames. Neither may panic, and neither may accept: the
// other side's proof covers this side's fresh nonce.
func FuzzHandshake(f *testing.F) {
	hello := appendFrame(nil, CmdHello, 0, 1, mustMarshalHello(&testing.T{}))
	f.Add(hello)
	f.Add(append(hello, appendFrame(nil, CmdProof, 0, 2, mustMarshalProof(&testing.T{}, make([]byte, 32)))...))
	reply, _ := wire.AppendFrame(nil, CmdHello, wire.FlagResponse, 1, &peerpb.HelloReply{Node: 2, Nonce: make([]byte, 32), Mac: make([]byte, 32), MaxFrame: 1 << 20})
	f.Add(reply)
	f.Add(appendFrame(nil, CmdHello, wire.FlagResponse|wire.FlagError, 1, errorBody(wire.CodeUnauthenticated, "no")))
	f.Add(wire.AppendHeader(nil, CmdHello, 0, 1, 1<<30))
	key := peerKey(secret)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := listen(bufio.NewReaderSize(bytes.NewReader(data), minMaxFrame), io.Discard, key, 2, minMaxFrame); err == nil {
			t.Fatal("listen accepted arbitrary bytes")
		}
		if _, err := dial(bufio.NewReaderSize(bytes.NewReader(data), minMaxFrame), io.Discard, key, 1, minMaxFrame); err == nil {
			t.Fatal("dial accepted arbitrary bytes")
		}
	})
}
