package wire_test

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/inboxd/inboxd/"

// The client side of the public API line (README, "Layout"): the protocol,
// the Go client, tokens, and the programs built on them. None may depend on
// the server's packages, so that a client needs nothing of the server and
// the server may change its own packages freely.
var (
	clientSide = []string{"wire", "wire/wirepb", "token", "client", "cmd/inboxctl", "bench", "cmd/inboxd-bench"}
	serverSide = []string{"gateway", "peer", "inbox", "sequencer", "timeline", "webhook", "internal/admin", "internal/metered", "internal/gatewaytest", "cmd/inboxd"}
)

// under reports whether the import path p is the module's package dir or
// one below it.
func under(p, dir string) bool { return p == module+dir || strings.HasPrefix(p, module+dir+"/") }

func isServer(p string) bool {
	return slices.ContainsFunc(serverSide, func(dir string) bool { return under(p, dir) })
}

// goList runs go list -f format on pkgs and returns its lines.
func goList(t *testing.T, format string, pkgs ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-f", format}, pkgs...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list %v: %v\n%s", pkgs, err, stderr)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func TestClientSideImportsNoServer(t *testing.T) {
	// Every server entry must name packages that exist: a moved package
	// would otherwise drop out of the check unnoticed.
	all := goList(t, "{{.ImportPath}}", module+"...")
	for _, s := range serverSide {
		if !slices.ContainsFunc(all, func(p string) bool { return under(p, s) }) {
			t.Errorf("server package %s does not exist: update serverSide", s)
		}
	}
	pkgs := make([]string, len(clientSide))
	for i, c := range clientSide {
		pkgs[i] = module + c
	}
	for _, line := range goList(t, `{{.ImportPath}} {{join .Deps " "}}`, pkgs...) {
		pkg, deps, _ := strings.Cut(line, " ")
		for _, d := range strings.Fields(deps) {
			if isServer(d) {
				t.Errorf("%s depends on the server package %s", pkg, d)
			}
		}
	}
}
