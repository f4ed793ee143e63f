// Package wire is inboxd's binary protocol: a fixed 12-byte frame header
// followed by a Protocol Buffers body (package wirepb). docs/protocol.md is
// the specification; this package is its Go implementation, shared by the
// gateway and the Go client, and the home of every fact of the protocol: the
// frame layout, commands and error codes, entry kinds and roles, the JSON
// schema of notices, and the limits. Its tests hold docs/protocol.md to it.
//
// This package is part of inboxd's public API (README, "Layout"): its
// exported names keep their meaning across releases of protocol version 1,
// and it imports nothing of the server, so a client can depend on it alone.
//
// A frame on the wire:
//
//	offset size field
//	0      4    length     body length in bytes, big-endian (header excluded)
//	4      1    version    protocol version, 1
//	5      1    flags      FlagResponse, FlagError
//	6      2    command    big-endian Command
//	8      4    request id big-endian; chosen by the client, echoed in the
//	                       response; 0 in server-initiated frames
//	12     …    body       length bytes of protobuf
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 12

// Version is the protocol version this package speaks.
const Version = 1

// DefaultMaxFrame is the largest frame, header included, that a peer accepts
// unless configured otherwise.
const DefaultMaxFrame = 256 << 10

// The WebSocket transport (docs/protocol.md, "WebSocket"): the same
// frames, one per binary message.
const (
	// WSPath is the URL path of a gateway's WebSocket listener.
	WSPath = "/ws"
	// WSSubprotocol is the subprotocol a client may offer; the gateway
	// selects it.
	WSSubprotocol = "inboxd.v1"
	// WSCloseError is the base of the close codes of a connection the
	// gateway closes after an ERROR frame or an error response: the close
	// code is WSCloseError plus the Error's code (4017 for REPLACED).
	WSCloseError = 4000
)

// Errors of Split and Decode.
var (
	ErrFrameTooLarge = errors.New("wire: frame too large")
	ErrVersion       = errors.New("wire: unsupported protocol version")
	ErrBody          = errors.New("wire: malformed body")
)

// Flags qualify a frame.
type Flags uint8

const (
	// FlagResponse marks a frame answering the request with the same id.
	FlagResponse Flags = 1 << 0
	// FlagError marks a response whose body is an Error rather than the
	// command's response body.
	FlagError Flags = 1 << 1
)

// Header is a decoded frame header.
type Header struct {
	Length    uint32
	Version   uint8
	Flags     Flags
	Command   Command
	RequestID uint32
}

// Frame is a decoded frame. Body aliases the buffer it was split from.
type Frame struct {
	Header
	Body []byte
}

// Split finds the first frame in buf. It returns the frame and the number of
// bytes it spans, or n == 0 when buf does not yet hold a whole frame. A frame
// whose header announces more than maxFrame bytes, or another protocol
// version, is an error: the stream cannot be trusted past it.
func Split(buf []byte, maxFrame int) (f Frame, n int, err error) {
	if len(buf) < HeaderSize {
		return Frame{}, 0, nil
	}
	h := Header{
		Length:    binary.BigEndian.Uint32(buf[0:4]),
		Version:   buf[4],
		Flags:     Flags(buf[5]),
		Command:   Command(binary.BigEndian.Uint16(buf[6:8])),
		RequestID: binary.BigEndian.Uint32(buf[8:12]),
	}
	if h.Version != Version {
		return Frame{}, 0, fmt.Errorf("%w: %d", ErrVersion, h.Version)
	}
	if uint64(h.Length)+HeaderSize > uint64(maxFrame) {
		return Frame{}, 0, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, uint64(h.Length)+HeaderSize, maxFrame)
	}
	end := HeaderSize + int(h.Length)
	if len(buf) < end {
		return Frame{}, 0, nil
	}
	return Frame{Header: h, Body: buf[HeaderSize:end:end]}, end, nil
}

// AppendHeader appends a header for a body of length bytes.
func AppendHeader(dst []byte, cmd Command, flags Flags, reqID uint32, length int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(length))
	dst = append(dst, Version, byte(flags))
	dst = binary.BigEndian.AppendUint16(dst, uint16(cmd))
	return binary.BigEndian.AppendUint32(dst, reqID)
}

// AppendFrame appends a whole frame with body m (nil: an empty body).
func AppendFrame(dst []byte, cmd Command, flags Flags, reqID uint32, m proto.Message) ([]byte, error) {
	size := 0
	if m != nil {
		size = proto.Size(m)
	}
	dst = AppendHeader(dst, cmd, flags, reqID, size)
	if m == nil {
		return dst, nil
	}
	out, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return dst[:len(dst)-HeaderSize], fmt.Errorf("wire: encode %v body: %w", cmd, err)
	}
	return out, nil
}

// Decode unmarshals a frame body into m.
func Decode(body []byte, m proto.Message) error {
	if err := proto.Unmarshal(body, m); err != nil {
		return fmt.Errorf("%w: %w", ErrBody, err)
	}
	return nil
}
