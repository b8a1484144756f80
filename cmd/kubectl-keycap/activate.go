package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"text/tabwriter"
	"time"
)

// activatePath is the data plane's licence activation endpoint (internal/activation.Path).
const activatePath = "/api/commercial/activate"

// maxAnswerBytes bounds the answer activate reads.
const maxAnswerBytes = 64 << 10

func runActivate(e *env, args []string) error {
	fs := newFlagSet("activate", e)
	base := fs.String("url", "http://127.0.0.1:9002", "base URL of keycap's data plane HTTP port")
	licenseKey := fs.String("license-key", "", "the licence key, or - to read it from stdin (recommended)")
	instanceID := fs.String("instance-id", "", "the ID of the instance to activate")
	reset := fs.Bool("reset", false, "release every other instance of the licence first")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("activate takes no arguments, only flags")
	}
	if err := e.checkOutput(); err != nil {
		return err
	}
	if *licenseKey == "" || *instanceID == "" {
		return usagef("activate needs --license-key (or --license-key - to read it from stdin) and --instance-id")
	}
	key, err := readSecretArg(e, *licenseKey)
	if err != nil {
		return err
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--url must be an http:// or https:// URL, e.g. http://127.0.0.1:9002")
	}
	u = u.JoinPath(activatePath)
	body, err := json.Marshal(map[string]bool{"reset": *reset})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("licensekey", key)
	req.Header.Set("instanceid", *instanceID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// The error names the URL only; the key travels in a header and is not part of it.
		return fmt.Errorf("activating: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("reading the answer of %s: %w", u, err)
	}
	ok := resp.StatusCode == http.StatusOK
	if e.output == "json" {
		fmt.Fprintf(e.stdout, "%s\n", bytes.TrimSpace(answer))
	} else {
		printActivation(e, resp, answer)
	}
	if !ok {
		return exitError{exitFailure}
	}
	return nil
}

// printActivation prints the answer's fields, one per line, in a stable order.
func printActivation(e *env, resp *http.Response, answer []byte) {
	var fields map[string]any
	if json.Unmarshal(answer, &fields) != nil {
		fmt.Fprintf(e.stdout, "HTTP %s\n%s\n", resp.Status, bytes.TrimSpace(answer))
		return
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "HTTP:\t%s\n", resp.Status)
	if inner, ok := fields["error"].(map[string]any); ok {
		for _, name := range []string{"code", "reason", "message"} {
			if v, ok := inner[name]; ok {
				fmt.Fprintf(tw, "Error %s:\t%v\n", name, v)
			}
		}
		delete(fields, "error")
	}
	for _, name := range sortedKeys(fields) {
		v := fields[name]
		// expiryDate is a Unix time in seconds, refresh an interval in seconds.
		if f, ok := v.(float64); ok && f > 0 {
			switch name {
			case "expiryDate":
				fmt.Fprintf(tw, "%s:\t%d (%s)\n", name, int64(f), time.Unix(int64(f), 0).UTC().Format(time.RFC3339))
				continue
			case "refresh":
				fmt.Fprintf(tw, "%s:\t%d (check in again every %s)\n", name, int64(f), time.Duration(f)*time.Second)
				continue
			}
		}
		fmt.Fprintf(tw, "%s:\t%v\n", name, v)
	}
	_ = tw.Flush()
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
