package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// fuzzTarget is one Fuzz function of the module.
type fuzzTarget struct{ pkg, name string }

// discoverFuzzTargets lists every fuzz target of the module with `go test -list`, so a target
// added anywhere is run without being named here.
func discoverFuzzTargets(ctx context.Context) ([]fuzzTarget, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-list", "^Fuzz", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go test -list: %w\n%s%s", err, out, stderr.String())
	}
	var targets, pending []fuzzTarget
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 1 && strings.HasPrefix(f[0], "Fuzz"):
			pending = append(pending, fuzzTarget{name: f[0]})
		case len(f) >= 2 && f[0] == "ok":
			for _, t := range pending {
				t.pkg = f[1]
				targets = append(targets, t)
			}
			pending = nil
		}
	}
	return targets, nil
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
