package main

import (
	"context"
	"slices"
	"testing"
)

// TestDiscoverFuzzTargets checks the source scan finds the module's fuzz targets, with their
// import paths, and nothing that only looks like one.
func TestDiscoverFuzzTargets(t *testing.T) {
	t.Chdir("../..")
	targets, err := discoverFuzzTargets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []fuzzTarget{
		{pkg: "github.com/keycap-dev/keycap/internal/keys", name: "FuzzCheck"},
		{pkg: "github.com/keycap-dev/keycap/internal/routepolicy", name: "FuzzRoute"},
		{pkg: "github.com/keycap-dev/keycap/internal/authz/wire", name: "FuzzExtract"},
	} {
		if !slices.Contains(targets, want) {
			t.Errorf("%s.%s not found in %v", want.pkg, want.name, targets)
		}
	}
	if len(targets) < 10 {
		t.Errorf("found %d fuzz targets, the module has at least 10: %v", len(targets), targets)
	}
}
