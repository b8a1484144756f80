// Package integrations holds the tests of the proxy recipes in config/samples/integrations: each
// Envoy configuration is parsed into go-control-plane's types and validated with their
// ValidateAll, and each Kubernetes manifest is applied with a server-side dry run to a real
// apiserver that has the proxies' own CRDs installed.
package integrations
