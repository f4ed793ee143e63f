// Command inboxctl talks to an inboxd server from a shell: it mints
// development tokens, manages groups, sends messages, and reads the inbox
// (once with sync, or continuously with tail). inboxctl admin calls the
// server API (docs/api.md) as the application's backend, with an API key
// instead of a token.
//
//	inboxctl [--addr host:port[,host:port…]] [--token T] [--json] <command> [flags] [args]
//
// --addr defaults to $INBOXD_ADDR or 127.0.0.1:7600; a comma-separated list
// names several nodes of a cluster, tried in a random order. --token to
// $INBOXD_TOKEN. Output is for people unless --json asks for one JSON object
// per line. Run inboxctl help for the commands.
//
// It is built on the public API alone (packages client, wire and token), as
// a third-party program would be.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], newApp(os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	stop()
	os.Exit(code)
}
