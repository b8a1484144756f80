// Command kubectl-keycap is the kubectl plugin of keycap: `kubectl keycap create|list|get|revoke|
// rotate|verify|activate`. It talks to the cluster of the current kubeconfig context, like kubectl,
// and prints a key only where printing it is the command's purpose (create, rotate), once.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Exit codes. verify answers 0 for a valid key and 1 for an invalid one; every other command
// answers 0 on success and 1 on failure. 2 is a usage error.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// usage is the top-level help.
const usage = `kubectl keycap manages keycap credentials (ApiKey, AgentKey, AppToken, License).

Usage:
  kubectl keycap create apikey NAME [--scopes a,b] [--prefix p] [--expires-in 30d]
                        [--description text] [--rotate-every 30d [--grace 1d]]
  kubectl keycap create agentkey NAME --parent APIKEY --agent ID [--scopes a,b] [--expires-in 30d]
  kubectl keycap create apptoken NAME --audience a[,b] [--duration 1h] [--scopes a,b]
  kubectl keycap create license NAME --product p [--plan p] [--max-instances N] [--entitlements a,b]
  kubectl keycap list [KIND]
  kubectl keycap get KIND NAME
  kubectl keycap revoke KIND NAME [--delete]
  kubectl keycap rotate apikey|agentkey NAME [--no-grace]
  kubectl keycap verify -             (reads the key or AppToken JWT from stdin; recommended)
  kubectl keycap verify KEY           (the key lands in your shell history)
  kubectl keycap activate --url http://127.0.0.1:9002 --license-key - --instance-id I [--reset]

create and rotate print the new key once on stdout (-o json: {"name","namespace","keyID","key"});
nothing else prints a key. For an AppToken, create prints the current token; keycap renews it into
the Secret before it expires. KIND is apikey, agentkey, apptoken or license (plural and short names
ak, agk, at, lic work too). Durations take d (24h), h, m and s: 30d, 720h, 1d12h.

rotate keeps the previous key working for spec.rotation.gracePeriod; a key without one is rotated
only with --no-grace (its current key then stops working at once).

verify judges an opaque key by its SHA-256 against the credentials' status, and an AppToken JWT by
its signature against the JWKS of keycap's data plane (--url, default http://127.0.0.1:9002;
--audience A to require an audience) and then against the live AppToken.

Flags of every command:
  --kubeconfig PATH    kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
  --context NAME       kubeconfig context (default: the current context)
  -n, --namespace NS   namespace (default: the context's namespace, then "default")
  -A, --all-namespaces list and verify across all namespaces
  --timeout 30s        how long create and rotate wait for the controller
  -o, --output FORMAT  text (default) or json

Exit codes: 0 success (verify: the key is valid), 1 failure (verify: the key is invalid),
2 usage error.
`

// globals are the flags every command accepts, anywhere on the command line.
type globals struct {
	kubeconfig    string
	kubeContext   string
	namespace     string
	allNamespaces bool
	timeout       time.Duration
	output        string
}

// register adds the global flags to fs. Each flag's default is its current value, so a flag given
// before the command name keeps its value when the command's own flag set parses the rest.
func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.kubeconfig, "kubeconfig", g.kubeconfig, "kubeconfig file")
	fs.StringVar(&g.kubeContext, "context", g.kubeContext, "kubeconfig context")
	fs.StringVar(&g.namespace, "namespace", g.namespace, "namespace")
	fs.StringVar(&g.namespace, "n", g.namespace, "namespace (shorthand)")
	fs.BoolVar(&g.allNamespaces, "all-namespaces", g.allNamespaces, "all namespaces")
	fs.BoolVar(&g.allNamespaces, "A", g.allNamespaces, "all namespaces (shorthand)")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "how long to wait for the controller")
	fs.StringVar(&g.output, "output", g.output, "output format: text or json")
	fs.StringVar(&g.output, "o", g.output, "output format (shorthand)")
}

// env is what a command runs with.
type env struct {
	globals
	stdin          io.Reader
	stdout, stderr io.Writer
}

// usageError is a mistake on the command line; run answers exitUsage.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// exitError carries a specific exit code whose message was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// commands maps a command name to its implementation. Each parses its own flags from args.
var commands = map[string]func(e *env, args []string) error{
	"create":   runCreate,
	"list":     runList,
	"get":      runGet,
	"revoke":   runRevoke,
	"rotate":   runRotate,
	"verify":   runVerify,
	"activate": runActivate,
	// SSO (sso.go).
	"login-link": runLoginLink,
	"logout":     runLogout,
}

// run is the whole plugin: it parses args (without the program name), runs the command and
// returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{globals: globals{timeout: 30 * time.Second, output: "text"}, stdin: stdin, stdout: stdout, stderr: stderr}
	fs := newFlagSet("kubectl keycap", e)
	if err := fs.Parse(args); err != nil {
		return report(e, err)
	}
	if fs.NArg() == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		return report(e, usagef("unknown command %q", name))
	}
	return report(e, cmd(e, rest))
}

// report prints err (if any) and returns the exit code it stands for.
func report(e *env, err error) int {
	var ue usageError
	var ee exitError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(e.stdout, usage)
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "error: %s\nRun 'kubectl keycap help' for usage.\n", ue.msg)
		return exitUsage
	default:
		fmt.Fprintf(e.stderr, "error: %s\n", err)
		return exitFailure
	}
}

// newFlagSet returns a flag set with the global flags that reports errors through its return
// value only (run prints them).
func newFlagSet(name string, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.register(fs)
	return fs
}

// parseArgs parses args with fs allowing flags before, between and after the positional arguments
// (as kubectl does), and returns the positional arguments. "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// fs.Parse stops at the first non-flag argument, or after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// checkOutput refuses an unknown --output.
func (e *env) checkOutput() error {
	switch e.output {
	case "text", "json":
		return nil
	}
	return usagef("--output must be text or json, not %q", e.output)
}
