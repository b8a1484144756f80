package sso

import (
	"html/template"
	"net/http"
)

// messages are the login page's texts by code; an unknown code shows none, so nothing a link
// carries is ever echoed.
var messages = map[string]string{
	CodeInvalidLink:  "This login link is invalid or has expired. Ask for a new one.",
	CodeSessionEnded: "Your session has ended. Log in again with a new link.",
	CodeLoggedOut:    "You are logged out.",
	CodeUnavailable:  "Login is not available right now. Try again in a moment.",
}

var pages = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>keycap: log in</title></head>
<body><main>
<h1>Log in</h1>
{{if .}}<p id="message" role="alert">{{.}}</p>{{end}}
<p>Open the login link you were given, or create a single-use one:</p>
<pre>kubectl keycap login-link apikey &lt;name&gt;</pre>
</main></body></html>
`))

var portal = template.Must(template.New("portal").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>keycap: portal</title></head>
<body><main>
<h1>Signed in</h1>
<dl id="identity">
<dt>Kind</dt><dd id="kind">{{.Kind}}</dd>
<dt>Namespace</dt><dd id="namespace">{{.Namespace}}</dd>
<dt>Name</dt><dd id="name">{{.Name}}</dd>
{{if .Agent}}<dt>Agent</dt><dd id="agent">{{.Agent}}</dd>{{end}}
{{if .Parent}}<dt>Parent</dt><dd id="parent">{{.Parent}}</dd>{{end}}
<dt>Scopes</dt><dd id="scopes">{{.Scopes}}</dd>
</dl>
<form method="post" action="` + PathLogout + `"><button type="submit">Log out</button></form>
</main></body></html>
`))

// loginPage shows the message of the ?error= code.
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	code, _ := onlyParam(r, "error")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pages.Execute(w, messages[code])
}

// portalPage shows who the session is, or sends the browser to the login page.
func (h *Handler) portalPage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	who, ok := h.Principal(r)
	if !ok {
		h.toLogin(w, r, CodeSessionEnded)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = portal.Execute(w, who)
}
