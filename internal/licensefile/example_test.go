package licensefile_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/keycap-dev/keycap/internal/licensefile"
	"github.com/keycap-dev/keycap/internal/signing"
)

// A product verifies its licence file offline with the licence public key keycap publishes
// (/.well-known/keycap-license-key.pem, or the ConfigMap keycap-public-keys).
func ExampleVerify() {
	// What keycap does: sign the file with its licence key.
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	file, _ := licensefile.Sign(licensefile.Payload{Product: "capstudio", Plan: "pro",
		Entitlements: []string{"sso"}, MaxInstances: 3, IssuedAt: time.Now()}, signing.Thumbprint(pub), priv)
	publishedPEM := signing.EncodePublicKeyPEM(pub)

	// What the product does: parse the shipped PEM once, then verify the file.
	key, err := signing.ParsePublicKeyPEM(publishedPEM)
	if err != nil {
		panic(err)
	}
	p, err := licensefile.Verify(file, key, time.Now())
	if err != nil {
		fmt.Println("licence refused:", err)
		return
	}
	fmt.Println(p.Product, p.Plan, p.Entitlements, p.MaxInstances)
	// Output: capstudio pro [sso] 3
}
