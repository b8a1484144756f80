package webhook

import (
	"strings"
	"testing"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
)

func TestValidateRoutePolicySpec(t *testing.T) {
	rule := func(methods []string, paths ...string) keycapv1alpha1.RoutePolicyRule {
		return keycapv1alpha1.RoutePolicyRule{Paths: paths, Methods: methods, Scopes: []string{"s"}}
	}
	cases := map[string]struct {
		rules    []keycapv1alpha1.RoutePolicyRule
		errs     []string
		warnings []string
	}{
		"the issue's example": {
			rules: []keycapv1alpha1.RoutePolicyRule{rule([]string{"POST", "DELETE"}, "/admin"), rule(nil, "/")},
		},
		"one prefix in two rules for different methods": {
			rules: []keycapv1alpha1.RoutePolicyRule{rule([]string{"POST"}, "/admin"), rule([]string{"GET"}, "/admin")},
		},
		"a prefix twice in a rule, by case": {
			rules: []keycapv1alpha1.RoutePolicyRule{rule(nil, "/admin", "/Admin")},
			errs:  []string{"spec.rules[0].paths[1]: Duplicate value"},
		},
		"a prefix twice in a rule, by trailing slash": {
			rules: []keycapv1alpha1.RoutePolicyRule{rule(nil, "/admin/", "/admin")},
			errs:  []string{"spec.rules[0].paths[1]: Duplicate value"},
		},
		"one prefix and method in two rules": {
			rules: []keycapv1alpha1.RoutePolicyRule{rule([]string{"POST"}, "/admin"), rule([]string{"POST", "PUT"}, "/admin/")},
			errs:  []string{"spec.rules[1].paths[0]: Duplicate value", "already claimed by rules[0]"},
		},
		"one prefix for every method in two rules": {
			rules: []keycapv1alpha1.RoutePolicyRule{rule(nil, "/"), rule(nil, "/")},
			errs:  []string{"spec.rules[1].paths[0]: Duplicate value", "for every method"},
		},
		"a method outside RFC 9110": {
			rules:    []keycapv1alpha1.RoutePolicyRule{rule([]string{"PROPFIND"}, "/dav")},
			warnings: []string{"spec.rules[0].methods[0]: PROPFIND is not an HTTP method of RFC 9110"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			spec := keycapv1alpha1.RoutePolicySpec{Hosts: []string{"shop.example.com"}, Rules: c.rules}
			errs, warnings := validateRoutePolicySpec(&spec, specPath)
			got := errs.ToAggregate()
			if len(c.errs) == 0 && got != nil {
				t.Errorf("errors %v, want none", got)
			}
			for _, want := range c.errs {
				if got == nil || !strings.Contains(got.Error(), want) {
					t.Errorf("errors %v, want one containing %q", got, want)
				}
			}
			if strings.Join(warnings, "\n") != strings.Join(c.warnings, "\n") {
				t.Errorf("warnings %q, want %q", warnings, c.warnings)
			}
		})
	}
}
