package wire_test

import (
	"errors"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/inboxd/inboxd/"

// The client side of the public API line (README, "Layout"): the protocol,
// the Go client, tokens, and the programs built on them. None may depend on
// the server's packages, so that a client needs nothing of the server and
// the server may change its own packages freely. Within the module they
// depend only on each other and on clientHelpers, internal packages written
// for them: whatever else the module holds, today or added later, is the
// server's.
var (
	clientSide    = []string{"wire", "wire/wirepb", "token", "client", "cmd/inboxctl", "bench", "cmd/inboxd-bench"}
	clientHelpers = []string{"internal/backoff", "internal/wsconn"}
)

// allowed reports whether a client-side package may depend on the import
// path p: any path outside the module, or a client-side package or helper.
func allowed(p string) bool {
	dir, ok := strings.CutPrefix(p, module)
	return !ok || slices.Contains(clientSide, dir) || slices.Contains(clientHelpers, dir)
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
	pkgs := make([]string, len(clientSide))
	for i, c := range clientSide {
		pkgs[i] = module + c
	}
	for _, line := range goList(t, `{{.ImportPath}} {{join .Deps " "}}`, pkgs...) {
		pkg, deps, _ := strings.Cut(line, " ")
		for _, d := range strings.Fields(deps) {
			if !allowed(d) {
				t.Errorf("%s depends on the server package %s", pkg, d)
			}
		}
	}
}

// TestPackageDocsDrawTheLine: the doc comment of every package but the
// commands says on which side of the public API line it is, pointing to
// README, "Layout", so that a package added later says it too.
func TestPackageDocsDrawTheLine(t *testing.T) {
	for _, line := range goList(t, `{{.Name}} {{.Dir}} {{join .GoFiles " "}}`, module+"...") {
		f := strings.Fields(line)
		if f[0] == "main" {
			continue
		}
		var doc strings.Builder
		for _, name := range f[2:] {
			file, err := parser.ParseFile(token.NewFileSet(), filepath.Join(f[1], name), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil {
				doc.WriteString(file.Doc.Text())
			}
		}
		if !strings.Contains(strings.Join(strings.Fields(doc.String()), " "), `(README, "Layout")`) {
			t.Errorf("package %s (%s): its doc comment does not say which side of the API line it is on (README, \"Layout\")", f[0], f[1])
		}
	}
}
