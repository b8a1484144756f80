package main

import (
	"testing"
	"time"

	"github.com/keycap-dev/keycap/internal/signing"
)

func version(t *testing.T, keys ...signing.Key) string {
	t.Helper()
	data, err := (signing.State{Keys: keys}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestJudgeSigningKeys(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k1, _ := signing.NewKey(t0)
	k2, _ := signing.NewKey(t0.Add(30 * time.Second))
	twin, _ := signing.NewKey(t0.Add(31 * time.Second))
	moved := k2
	moved.SignFrom = k2.SignFrom.Add(time.Minute)

	cases := map[string]struct {
		versions []string
		added    int
		problems int
	}{
		"a rotation adds one key":         {[]string{version(t, k1), version(t, k1, k2)}, 1, 0},
		"a key dropped":                   {[]string{version(t, k1, k2), version(t, k2)}, 0, 1},
		"a key changed":                   {[]string{version(t, k1, k2), version(t, k1, moved)}, 0, 1},
		"two successors for one rotation": {[]string{version(t, k1), version(t, k1, k2, twin)}, 2, 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			added, problems := judgeSigningKeys(tc.versions, 30*time.Second)
			if added != tc.added || len(problems) != tc.problems {
				t.Fatalf("added %d, problems %q; want %d added, %d problems", added, problems, tc.added, tc.problems)
			}
		})
	}
}
