package peer

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/inboxd/inboxd/peer/peerpb"
	"github.com/inboxd/inboxd/wire"
)

// keyLabel derives the peer key from the cluster's secret. It holds spaces,
// which base64url never does, so no client token's signature (an HMAC under
// the secret over base64url text) is ever the peer key.
const keyLabel = "inboxd peer key v1"

// nonceSize is the size of each side's challenge.
const nonceSize = 32

// Labels of the two proofs, so that neither side's MAC is ever valid as the
// other's.
const (
	labelListener = "inboxd peer listener"
	labelDialler  = "inboxd peer dialler"
)

// peerKey derives the key of the handshake's MACs from the secret.
func peerKey(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(keyLabel))
	return m.Sum(nil)
}

// proof is the MAC one side sends: over its label, both nonces and both
// node ids, the prover's first.
func proof(key []byte, label string, dialNonce, listenNonce []byte, prover, verifier uint32) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(dialNonce)
	m.Write(listenNonce)
	m.Write(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, prover), verifier))
	return m.Sum(nil)
}

func newNonce() []byte {
	b := make([]byte, nonceSize)
	rand.Read(b)
	return b
}

// expect checks that f is a frame of the handshake: cmd with exactly flags.
// An error response from the other side is returned as an *Error.
func expect(f wire.Frame, cmd wire.Command, flags wire.Flags) error {
	if f.Flags == wire.FlagResponse|wire.FlagError && f.Command == cmd {
		return decodeError(f.Body)
	}
	if f.Command == wire.CmdError && f.Flags == 0 {
		return decodeError(f.Body)
	}
	if f.Command != cmd || f.Flags != flags {
		return fmt.Errorf("%w: got %v flags %#x, want %v flags %#x", ErrProtocol, f.Command, f.Flags, cmd, flags)
	}
	return nil
}

// decodeHello checks the dialling node's first frame.
func decodeHello(f wire.Frame) (*peerpb.Hello, error) {
	if err := expect(f, CmdHello, 0); err != nil {
		return nil, err
	}
	var m peerpb.Hello
	if err := wire.Decode(f.Body, &m); err != nil {
		return nil, fmt.Errorf("%w: hello: %w", ErrProtocol, err)
	}
	if len(m.Nonce) != nonceSize || m.MaxFrame < minMaxFrame {
		return nil, fmt.Errorf("%w: hello: nonce of %d bytes, max_frame %d", ErrProtocol, len(m.Nonce), m.MaxFrame)
	}
	return &m, nil
}

// decodeHelloReply checks the listening node's answer to Hello.
func decodeHelloReply(f wire.Frame) (*peerpb.HelloReply, error) {
	if err := expect(f, CmdHello, wire.FlagResponse); err != nil {
		return nil, err
	}
	var m peerpb.HelloReply
	if err := wire.Decode(f.Body, &m); err != nil {
		return nil, fmt.Errorf("%w: hello reply: %w", ErrProtocol, err)
	}
	if len(m.Nonce) != nonceSize || len(m.Mac) != sha256.Size || m.MaxFrame < minMaxFrame {
		return nil, fmt.Errorf("%w: hello reply: nonce of %d bytes, mac of %d, max_frame %d", ErrProtocol, len(m.Nonce), len(m.Mac), m.MaxFrame)
	}
	return &m, nil
}

// decodeProof checks the dialling node's proof.
func decodeProof(f wire.Frame) (*peerpb.Proof, error) {
	if err := expect(f, CmdProof, 0); err != nil {
		return nil, err
	}
	var m peerpb.Proof
	if err := wire.Decode(f.Body, &m); err != nil {
		return nil, fmt.Errorf("%w: proof: %w", ErrProtocol, err)
	}
	if len(m.Mac) != sha256.Size {
		return nil, fmt.Errorf("%w: proof: mac of %d bytes", ErrProtocol, len(m.Mac))
	}
	return &m, nil
}

// writeMsg writes one frame with body m straight to w: the handshake runs
// before the connection's writer starts.
func writeMsg(w io.Writer, cmd wire.Command, flags wire.Flags, id uint32, m proto.Message) error {
	b, err := wire.AppendFrame(nil, cmd, flags, id, m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// session is what a handshake establishes.
type session struct {
	node     uint32 // the other side's node id
	maxFrame int    // the largest frame the other side accepts
}

// listen runs the listening side of the handshake: read Hello, prove the
// secret and challenge, check the dialler's proof. A bad proof is answered
// UNAUTHENTICATED before the error returns.
func listen(r *bufio.Reader, w io.Writer, key []byte, self uint32, maxFrame int) (session, error) {
	f, err := readFrame(r, maxFrame)
	if err != nil {
		return session{}, err
	}
	hello, err := decodeHello(f)
	if err != nil {
		return session{}, err
	}
	nonce := newNonce()
	reply := &peerpb.HelloReply{
		Node: self, Nonce: nonce, MaxFrame: uint32(maxFrame),
		Mac: proof(key, labelListener, hello.Nonce, nonce, self, hello.Node),
	}
	if err := writeMsg(w, CmdHello, wire.FlagResponse, f.RequestID, reply); err != nil {
		return session{}, err
	}
	if f, err = readFrame(r, maxFrame); err != nil {
		return session{}, err
	}
	p, err := decodeProof(f)
	if err != nil {
		return session{}, err
	}
	if !hmac.Equal(p.Mac, proof(key, labelDialler, hello.Nonce, nonce, hello.Node, self)) {
		w.Write(appendFrame(nil, CmdProof, wire.FlagResponse|wire.FlagError, f.RequestID, errorBody(wire.CodeUnauthenticated, "bad proof")))
		return session{}, fmt.Errorf("%w: node %d: bad proof", ErrAuth, hello.Node)
	}
	if _, err := w.Write(appendFrame(nil, CmdProof, wire.FlagResponse, f.RequestID, nil)); err != nil {
		return session{}, err
	}
	return session{node: hello.Node, maxFrame: int(hello.MaxFrame)}, nil
}

// dial runs the dialling side of the handshake: send Hello, check the
// listener's proof, prove the secret in turn.
func dial(r *bufio.Reader, w io.Writer, key []byte, self uint32, maxFrame int) (session, error) {
	nonce := newNonce()
	if err := writeMsg(w, CmdHello, 0, 1, &peerpb.Hello{Node: self, Nonce: nonce, MaxFrame: uint32(maxFrame)}); err != nil {
		return session{}, err
	}
	f, err := readFrame(r, maxFrame)
	if err != nil {
		return session{}, err
	}
	reply, err := decodeHelloReply(f)
	if err != nil {
		return session{}, err
	}
	if !hmac.Equal(reply.Mac, proof(key, labelListener, nonce, reply.Nonce, reply.Node, self)) {
		return session{}, fmt.Errorf("%w: node %d does not hold the cluster's secret", ErrAuth, reply.Node)
	}
	mac := proof(key, labelDialler, nonce, reply.Nonce, self, reply.Node)
	if err := writeMsg(w, CmdProof, 0, 2, &peerpb.Proof{Mac: mac}); err != nil {
		return session{}, err
	}
	if f, err = readFrame(r, maxFrame); err != nil {
		return session{}, err
	}
	if err := expect(f, CmdProof, wire.FlagResponse); err != nil {
		return session{}, fmt.Errorf("%w: node %d: %w", ErrAuth, reply.Node, err)
	}
	return session{node: reply.Node, maxFrame: int(reply.MaxFrame)}, nil
}
