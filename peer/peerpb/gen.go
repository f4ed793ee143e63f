// Package peerpb holds the Protocol Buffers bodies of the peer handshake,
// generated from peer.proto (protoc from Debian's protobuf-compiler,
// protoc-gen-go v1.36.12 from google.golang.org/protobuf/cmd/protoc-gen-go).
//
// It is the server's own (README, "Layout"), as package peer is: the node
// handshake is no API.
package peerpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative peer.proto
