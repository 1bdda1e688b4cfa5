package service

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tensafe/tensafe/api"
	"github.com/tensafe/tensafe/audit"
)

// opLiteral matches the string literals that name an audited operation.
var opLiteral = regexp.MustCompile(`^(training|artifact|dataset|admin|service|he|compliance|retention|auth|access|audit)\.[a-z][a-z_]*$`)

// sourceStrings returns the string literals of the non-test Go files
// matching glob, and the string constants whose names start with prefix.
func sourceStrings(t *testing.T, glob, prefix string) (lits, consts []string) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: %v (%d files)", glob, err, len(files))
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if v, err := strconv.Unquote(n.Value); err == nil {
						lits = append(lits, v)
					}
				}
			case *ast.ValueSpec:
				for i, id := range n.Names {
					if prefix == "" || !strings.HasPrefix(id.Name, prefix) || i >= len(n.Values) {
						continue
					}
					if l, ok := n.Values[i].(*ast.BasicLit); ok && l.Kind == token.STRING {
						v, _ := strconv.Unquote(l.Value)
						consts = append(consts, v)
					}
				}
			}
			return true
		})
	}
	return lits, consts
}

// TestEveryAuditedOperationHasCategory: every operation name the service
// and the server write to the audit log has a compliance category, or is
// one of the data-plane operations that deliberately have none (never
// both): each string literal of their sources that names an operation, and
// "training." + every operation kind of the store (the queue audits
// "training." + kind). A new operation fails here until it is classified.
func TestEveryAuditedOperationHasCategory(t *testing.T) {
	var ops []string
	for _, glob := range []string{"*.go", filepath.Join("..", "server", "*.go")} {
		lits, _ := sourceStrings(t, glob, "")
		for _, l := range lits {
			if opLiteral.MatchString(l) {
				ops = append(ops, l)
			}
		}
	}
	_, kinds := sourceStrings(t, filepath.Join("..", "store", "store.go"), "Kind")
	if len(kinds) < 6 {
		t.Fatalf("operation kinds of the store: %v", kinds)
	}
	for _, k := range kinds {
		ops = append(ops, "training."+k)
	}
	slices.Sort(ops)
	ops = slices.Compact(ops)
	// The scan must see what it is meant to see.
	for _, want := range []string{OpIntegrityFailure, "admin.create_tenant", "auth.denied", "training.optim_step", "he.delete_model", "dataset.create", "dataset.delete"} {
		if !slices.Contains(ops, want) {
			t.Fatalf("the source scan missed %q: %v", want, ops)
		}
	}
	for _, op := range ops {
		r := audit.Record{Actor: "system", Operation: op, Outcome: audit.OutcomeSuccess}
		c := ComplianceCategory(r)
		if dataPlaneOperations[op] {
			if c != "" {
				t.Errorf("data-plane operation %q has category %q", op, c)
			}
			if d := ComplianceCategory(audit.Record{Operation: op, Outcome: audit.OutcomeDenied}); d != api.CategoryAccess {
				t.Errorf("a refused %q is %q, want ACCESS", op, d)
			}
			continue
		}
		if c == "" {
			t.Errorf("operation %q has no compliance category", op)
			continue
		}
		if !slices.Contains(api.ComplianceCategories(), c) {
			t.Errorf("operation %q: unknown category %q", op, c)
		}
		if got := categorize(r).Details[api.ComplianceCategoryKey]; got != c {
			t.Errorf("operation %q tagged %q, want %q", op, got, c)
		}
	}
	for op := range dataPlaneOperations {
		if !slices.Contains(ops, op) {
			t.Errorf("data-plane operation %q is not written by the service", op)
		}
	}
	t.Logf("%d operations classified", len(ops))
}
