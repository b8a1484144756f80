package wire

// Field is an identity field only some kinds set.
type Field uint8

// Fields a kind may set besides the five every allowed answer carries (kind, namespace, name,
// key ID, scopes).
const (
	FieldAgent Field = 1 << iota
	FieldParent
	FieldSubject
	FieldEntitlements
	// FieldAuthMethod is set on answers to a request the session cookie authenticated.
	FieldAuthMethod
	fieldSets = 1 << iota
)

// Identity is what an allowed answer tells the upstream about the credential. Each transport
// builds its headers and its remove-list from it: the headers of the fields set, and the
// optional headers of the fields not set (a client may have forged them).
type Identity struct {
	Kind, Namespace, Name, KeyID, Scopes string
	Agent, Parent, Subject, Entitlements string
	// AuthMethod is AuthMethodSession for a request the session cookie authenticated.
	AuthMethod string
	// Fields says which optional fields this credential's kind sets.
	Fields Field
}

// identityHeader is one identity header: its name and, for an optional one, its field.
type identityHeader struct {
	Name      string
	Canonical string
	Field     Field
}

// IdentityHeaderCount is the number of identity headers.
const IdentityHeaderCount = 10

// AuthMethodSession is the x-keycap-auth-method of a request the session cookie authenticated.
const AuthMethodSession = "session"

// identityHeaders are every identity header, the five every answer sets first.
var identityHeaders = [IdentityHeaderCount]identityHeader{
	{Name: HeaderKind}, {Name: HeaderNamespace}, {Name: HeaderName}, {Name: HeaderKeyID}, {Name: HeaderScopes},
	{Name: HeaderAgent, Field: FieldAgent}, {Name: HeaderParent, Field: FieldParent},
	{Name: HeaderSubject, Field: FieldSubject}, {Name: HeaderEntitlements, Field: FieldEntitlements},
	{Name: HeaderAuthMethod, Field: FieldAuthMethod},
}

func init() {
	for i := range identityHeaders {
		identityHeaders[i].Canonical = Canonical(identityHeaders[i].Name)
	}
}

// IdentityHeader returns the lowercase and canonical names of identity header i and whether id
// sets it.
func (id *Identity) IdentityHeader(i int) (name, canonical string, set bool) {
	h := &identityHeaders[i]
	return h.Name, h.Canonical, h.Field == 0 || id.Fields&h.Field != 0
}

// Value returns the value of identity header i.
func (id *Identity) Value(i int) string {
	switch i {
	case 0:
		return id.Kind
	case 1:
		return id.Namespace
	case 2:
		return id.Name
	case 3:
		return id.KeyID
	case 4:
		return id.Scopes
	case 5:
		return id.Agent
	case 6:
		return id.Parent
	case 7:
		return id.Subject
	case 8:
		return id.Entitlements
	case 9:
		return id.AuthMethod
	}
	return ""
}

// Count returns how many identity headers id sets.
func (id *Identity) Count() int {
	n := 0
	for i := range identityHeaders {
		if _, _, set := id.IdentityHeader(i); set {
			n++
		}
	}
	return n
}

// IdentityHeaderNames returns every identity header's lowercase name.
func IdentityHeaderNames() []string {
	out := make([]string, len(identityHeaders))
	for i, h := range identityHeaders {
		out[i] = h.Name
	}
	return out
}
