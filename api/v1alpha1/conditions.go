package v1alpha1

// Condition types.
const (
	// ConditionReady is True while the credential is issued and usable.
	ConditionReady = "Ready"
)

// Reasons of the Ready condition. They are part of the API: alerting and clients match on them.
const (
	// ReasonIssued: the credential is issued, its Secret is current and it is usable.
	ReasonIssued = "Issued"
	// ReasonDisabled: spec.disabled is true; the data plane refuses the credential.
	ReasonDisabled = "Disabled"
	// ReasonExpired: the credential's expiry has passed.
	ReasonExpired = "Expired"
	// ReasonSecretConflict: a Secret with the requested name exists and keycap does not own it;
	// keycap never overwrites it.
	ReasonSecretConflict = "SecretConflict"
	// ReasonParentInactive: an AgentKey's parent ApiKey is missing, disabled or expired.
	ReasonParentInactive = "ParentInactive"
	// ReasonSigningKeyUnavailable: the AppToken signing key set cannot be read.
	ReasonSigningKeyUnavailable = "SigningKeyUnavailable"
	// ReasonInvalidSpec: the spec cannot be acted on (a rule the admission webhook enforces was
	// bypassed, e.g. while the webhook was down).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonDuplicateKey: another credential, created earlier, holds the same key digest (two
	// creates raced past the webhook's uniqueness check). The oldest object keeps the key; this
	// one is refused by the data plane until it gets a key of its own.
	ReasonDuplicateKey = "DuplicateKey"
	// ReasonNamespaceTerminating: the credential's namespace is being deleted and its Secret is
	// gone; keycap does not write it again, and the key it held is no longer valid.
	ReasonNamespaceTerminating = "NamespaceTerminating"
	// ReasonError: an unexpected error; the controller retries with backoff.
	ReasonError = "Error"
)

// Labels and annotations keycap puts on the Secrets it manages.
const (
	// LabelManagedBy marks a Secret that keycap manages; the tamper guard selects on it.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByValue is the value of LabelManagedBy on keycap's Secrets.
	ManagedByValue = "keycap"
	// LabelKind names the kind of the credential a Secret belongs to.
	LabelKind = "keycap.dev/kind"
	// LabelName names the credential a Secret belongs to.
	LabelName = "keycap.dev/name"
	// AnnotationKeyID records the keyID of the key the Secret holds.
	AnnotationKeyID = "keycap.dev/key-id"
	// AnnotationRotate asks for an immediate rotation when its value changes (kubectl keycap rotate).
	AnnotationRotate = "keycap.dev/rotate"
)
