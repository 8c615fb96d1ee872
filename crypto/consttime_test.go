package crypto

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConstantTimeLint is P16: secrets are compared only through
// crypto/subtle. It type-checks the package's non-test files and fails on
// bytes.Equal, bytes.Compare, reflect.DeepEqual, and on == or != between
// arrays (every key, MAC, tag and hash here is an array).
func TestConstantTimeLint(t *testing.T) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	if _, err := conf.Check("github.com/warrenvpn/warren/crypto", fset, files, info); err != nil {
		t.Fatalf("type-check: %v", err)
	}
	banned := map[string]bool{"bytes.Equal": true, "bytes.Compare": true, "reflect.DeepEqual": true}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if obj := info.Uses[n.Sel]; obj != nil && obj.Pkg() != nil {
					if name := obj.Pkg().Path() + "." + obj.Name(); banned[name] {
						t.Errorf("%v: %s is not constant time; use crypto/subtle", fset.Position(n.Pos()), name)
					}
				}
			case *ast.BinaryExpr:
				if n.Op != token.EQL && n.Op != token.NEQ {
					return true
				}
				for _, x := range []ast.Expr{n.X, n.Y} {
					if _, ok := info.Types[x].Type.Underlying().(*types.Array); ok {
						t.Errorf("%v: array compared with %v; use crypto/subtle", fset.Position(n.Pos()), n.Op)
						break
					}
				}
			}
			return true
		})
	}
}
