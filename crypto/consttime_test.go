package crypto

import (
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestConstantTimeLint is P16: secrets are compared only through
// crypto/subtle. It type-checks the package's non-test files and fails on
// bytes.Equal, bytes.Compare, reflect.DeepEqual, and on == or != between
// arrays (every key, MAC, tag and hash here is an array).
//
// Imported packages are replaced by empty ones so the check stays fast;
// every secret type is declared in this package, so comparisons of them
// still type-check.
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
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}}
	conf := types.Config{
		Importer: emptyImporter{},
		Error:    func(error) {}, // unresolved imported names are expected
	}
	conf.Check("github.com/warrenvpn/warren/crypto", fset, files, info)

	banned := map[string]bool{"bytes.Equal": true, "bytes.Compare": true, "reflect.DeepEqual": true}
	for _, f := range files {
		imports := map[string]string{} // local name → path
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			name := path[strings.LastIndex(path, "/")+1:]
			if imp.Name != nil {
				name = imp.Name.Name
			}
			imports[name] = path
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok {
					if name := imports[x.Name] + "." + n.Sel.Name; banned[name] {
						t.Errorf("%v: %s is not constant time; use crypto/subtle", fset.Position(n.Pos()), name)
					}
				}
			case *ast.BinaryExpr:
				if n.Op != token.EQL && n.Op != token.NEQ {
					return true
				}
				for _, x := range []ast.Expr{n.X, n.Y} {
					if tv, ok := info.Types[x]; ok && tv.Type != nil {
						if _, ok := tv.Type.Underlying().(*types.Array); ok {
							t.Errorf("%v: array compared with %v; use crypto/subtle", fset.Position(n.Pos()), n.Op)
							break
						}
					}
				}
			}
			return true
		})
	}
}

// emptyImporter imports every package as an empty one.
type emptyImporter struct{}

func (emptyImporter) Import(path string) (*types.Package, error) {
	p := types.NewPackage(path, path[strings.LastIndex(path, "/")+1:])
	p.MarkComplete()
	return p, nil
}
