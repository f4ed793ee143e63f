// Package wirepb holds the Protocol Buffers bodies of inboxd's frames,
// generated from inboxd.proto (protoc from Debian's protobuf-compiler,
// protoc-gen-go from google.golang.org/protobuf/cmd/protoc-gen-go).
//
// This package is part of inboxd's public API (README, "Layout"): fields
// are only ever added, never renumbered or removed, within protocol version 1.
package wirepb

//go:generate protoc --go_out=. --go_opt=paths=source_relative inboxd.proto
