package main

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fuzzTarget is one Fuzz function of the module.
type fuzzTarget struct{ pkg, name string }

// discoverFuzzTargets lists every fuzz target of the module — each top-level func Fuzz… in a
// _test.go file — so a target added anywhere is run without being named here. It reads the
// sources rather than running `go test -list ./...`, which compiles every test binary of the
// module (a minute here) to say the same.
func discoverFuzzTargets(_ context.Context) ([]fuzzTarget, error) {
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		return nil, fmt.Errorf("reading go.mod (run from the module's root): %w", err)
	}
	module := ""
	for line := range strings.Lines(string(mod)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			module = strings.TrimSpace(rest)
			break
		}
	}
	if module == "" {
		return nil, errors.New("go.mod names no module")
	}
	var targets []fuzzTarget
	fset := token.NewFileSet()
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parsing %s: %w", path, err)
		}
		pkg := module
		if dir := filepath.ToSlash(filepath.Dir(path)); dir != "." {
			pkg += "/" + dir
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Fuzz") && takesTestingF(fn) {
				targets = append(targets, fuzzTarget{pkg: pkg, name: fn.Name.Name})
			}
		}
		return nil
	})
	slices.SortFunc(targets, func(a, b fuzzTarget) int { return strings.Compare(a.pkg+"."+a.name, b.pkg+"."+b.name) })
	return targets, err
}

// takesTestingF reports whether fn's one parameter is a *testing.F.
func takesTestingF(fn *ast.FuncDecl) bool {
	params := fn.Type.Params.List
	if len(params) != 1 || len(params[0].Names) > 1 {
		return false
	}
	star, ok := params[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "F"
}

var execsRE = regexp.MustCompile(`execs: (\d+)`)

// fuzzAll runs every fuzz target for d each.
func fuzzAll(ctx context.Context, d time.Duration) ([]row, error) {
	say("fuzzing: discovering the module's fuzz targets")
	targets, err := discoverFuzzTargets(ctx)
	if err != nil {
		return nil, err
	}
	var rows []row
	var failed []string
	for _, t := range targets {
		say("  %s %s for %s", t.pkg, t.name, d)
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-fuzz", "^"+t.name+"$", "-fuzztime", d.String(), t.pkg)
		cmd.Env = os.Environ()
		out, err := cmd.CombinedOutput()
		execs := int64(0)
		if m := execsRE.FindAllSubmatch(out, -1); len(m) > 0 {
			execs, _ = strconv.ParseInt(string(m[len(m)-1][1]), 10, 64)
		}
		r := row{scenario: "9. fuzz " + strings.TrimPrefix(t.pkg, "github.com/keycap-dev/keycap/") + "." + t.name,
			load: "go test -fuzz, 2 workers", duration: time.Since(start), decisions: execs, figure: "no failing input"}
		if err != nil {
			r.wrong = 1
			r.figure = "FAILED: " + lastLines(string(out), 6)
			failed = append(failed, t.pkg+"."+t.name)
		}
		rows = append(rows, r)
		printRows(os.Stderr, []row{r})
	}
	if len(failed) > 0 {
		return rows, fmt.Errorf("fuzz targets failed (their inputs are in testdata/fuzz): %s", strings.Join(failed, ", "))
	}
	return rows, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.ReplaceAll(strings.Join(lines, " / "), "|", "\\|")
}
