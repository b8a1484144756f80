// Package lifecycle holds every rule of a credential's life, once: when it expires, which Ready
// reason it has, when an opaque key is rotated and how long the previous key stays valid, when an
// AppToken's token is renewed, and who holds a licence seat. The controllers, the webhook, the
// data-plane index and licence activation all decide with these functions, so they can never
// disagree (the data plane allowing what the controller calls expired).
//
// Everything here is a pure function of its inputs and of "now", which callers read from an
// injected clock (cert-manager's trigger/policies shape); nothing here reads a clock, the
// apiserver or a Secret.
package lifecycle
