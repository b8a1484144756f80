package wire

import (
	"strings"
	"testing"

	"github.com/onsi/gomega"
)

func TestParseActivation(t *testing.T) {
	cases := map[string]struct {
		h    map[string][]string
		body string
		want ActivationRequest
		err  error
	}{
		"headers and a body":          {h: map[string][]string{"Licensekey": {"k"}, "Instanceid": {" i "}}, body: `{"reset": true}`, want: ActivationRequest{LicenseKey: "k", InstanceID: "i", Reset: true}},
		"an empty body is no reset":   {h: map[string][]string{"Licensekey": {"k"}, "Instanceid": {"i"}}, want: ActivationRequest{LicenseKey: "k", InstanceID: "i"}},
		"the same value twice":        {h: map[string][]string{"Licensekey": {"k", "k"}, "Instanceid": {"i"}}, want: ActivationRequest{LicenseKey: "k", InstanceID: "i"}},
		"two different licence keys":  {h: map[string][]string{"Licensekey": {"k1", "k2"}, "Instanceid": {"i"}}, err: ErrActivationHeaders},
		"two different instances":     {h: map[string][]string{"Licensekey": {"k"}, "Instanceid": {"i1", "i2"}}, err: ErrActivationHeaders},
		"no instance":                 {h: map[string][]string{"Licensekey": {"k"}}, err: ErrActivationHeaders},
		"an instance with a space":    {h: map[string][]string{"Licensekey": {"k"}, "Instanceid": {"a b"}}, err: ErrActivationInstanceID},
		"a body that is not JSON":     {h: map[string][]string{"Licensekey": {"k"}, "Instanceid": {"i"}}, body: "reset", err: ErrActivationBody},
		"a body beyond the limit":     {h: map[string][]string{"Licensekey": {"k"}, "Instanceid": {"i"}}, body: strings.Repeat(" ", MaxActivationBody+1), err: ErrActivationBody},
		"a key that is not printable": {h: map[string][]string{"Licensekey": {"k\x01"}, "Instanceid": {"i"}}, err: ErrActivationHeaders},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			g := gomega.NewWithT(t)
			got, err := ParseActivation(tc.h, []byte(tc.body))
			if tc.err != nil {
				g.Expect(err).To(gomega.MatchError(tc.err))
				return
			}
			g.Expect(err).NotTo(gomega.HaveOccurred())
			g.Expect(got).To(gomega.Equal(tc.want))
		})
	}
}

// FuzzParseActivation feeds arbitrary headers and bodies to the activation request parser: it
// never panics, and what it accepts is one printable licence key and instance from the input.
func FuzzParseActivation(f *testing.F) {
	f.Add("kclic_abc", "node-1", `{"reset": false}`)
	f.Add("k1\nk2", "i", "")
	f.Add("k", "i1\ni2", `{"reset": true}`)
	f.Add("", "i", "{")
	f.Fuzz(func(t *testing.T, key, instance, body string) {
		h := map[string][]string{}
		if key != "" {
			h["Licensekey"] = strings.Split(key, "\n")
		}
		if instance != "" {
			h["Instanceid"] = strings.Split(instance, "\n")
		}
		req, err := ParseActivation(h, []byte(body))
		if err != nil {
			if !IsActivationError(err) {
				t.Fatalf("an error of another type: %v", err)
			}
			return
		}
		if !ValidCredential(req.LicenseKey) || !ValidCredential(req.InstanceID) ||
			!strings.Contains(key, req.LicenseKey) || !strings.Contains(instance, req.InstanceID) {
			t.Fatalf("accepted %+v from %q, %q", req, key, instance)
		}
	})
}
