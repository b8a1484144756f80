// Package webhook is keycap's validating admission webhook for the four credential kinds, and the
// tamper guard for the Secrets keycap manages.
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keycap-dev/keycap/internal/registry"
	"github.com/keycap-dev/keycap/internal/webhookcert"
)

// RBAC of the webhook: read the credentials (cache and field indexes), keep its certificate
// Secret and inject the caBundle.
// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys;agentkeys;apptokens;licenses,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get;update
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=selfsubjectreviews,verbs=create

// Options configure the webhook.
type Options struct {
	// OperatorNamespace holds the webhook's CA and serving certificate Secret.
	OperatorNamespace string
	// ManageCertificates makes keycap issue and rotate its own serving certificate and inject the
	// caBundle; false when cert-manager provides them.
	ManageCertificates bool

	// Clock decides expiry checks and certificate renewals; defaults to the real clock.
	Clock clock.WithTicker
	// Policy holds the configurable limits; zero means DefaultPolicy().
	Policy Policy
	// ConfigurationName is the ValidatingWebhookConfiguration the caBundle goes into; defaults
	// to ConfigurationName.
	ConfigurationName string
	// ServiceName is the Service in front of the webhook, in OperatorNamespace; the serving
	// certificate names it. Defaults to DefaultServiceName.
	ServiceName string
	// OperatorUsernames are the operator's identities: they may create and change the Secrets
	// keycap manages, in addition to the identity this process runs as (learnt from a
	// SelfSubjectReview at setup). Empty means the operator's in-cluster ServiceAccount,
	// OperatorServiceAccountUsername(OperatorNamespace). With managed certificates they also
	// replace the service account in the tamper guard's not-the-operator matchCondition, so the
	// apiserver never calls the webhook for the operator's own writes.
	OperatorUsernames []string
	// Certificates tunes the managed certificates (lifetimes, renew windows); its Namespace,
	// ConfigurationName, names and Clock are filled in from the fields above.
	Certificates webhookcert.Options
}

// Webhook is what SetupWithManager registered, for tests and main.
type Webhook struct {
	// Certificates is the certificate manager; nil when ManageCertificates is false.
	Certificates *webhookcert.Manager
	// Operators are the usernames the tamper guard lets change managed Secrets.
	Operators []string
}

// SetupWithManager registers the validators (and, unless certificates are managed elsewhere, the
// certificate manager) with mgr.
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	_, err := Setup(mgr, opts)
	return err
}

// Setup is SetupWithManager returning what it registered.
func Setup(mgr ctrl.Manager, opts Options) (*Webhook, error) {
	if opts.OperatorNamespace == "" {
		return nil, errors.New("webhook: OperatorNamespace is required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy()
	}
	if opts.ConfigurationName == "" {
		opts.ConfigurationName = ConfigurationName
	}
	if opts.ServiceName == "" {
		opts.ServiceName = DefaultServiceName
	}
	ctx := context.Background()
	if err := registry.AddFieldIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}

	v := &validator{reader: mgr.GetCache(), apiReader: mgr.GetAPIReader(), clock: opts.Clock, policy: opts.Policy}
	rules := v.kindRules()
	for _, k := range registry.Kinds() {
		r, ok := rules[k.Name]
		if !ok {
			return nil, fmt.Errorf("webhook: no validation rules for kind %s", k.Name)
		}
		mgr.GetWebhookServer().Register(validatePath(k), &ctrlwebhook.Admission{
			Handler: &credentialWebhook{kind: k, rules: r, v: v, decoder: admission.NewDecoder(mgr.GetScheme())},
		})
	}
	setupRoutePolicyWebhook(mgr)

	self, err := selfUsername(ctx, mgr)
	if err != nil {
		return nil, err
	}
	operators := []string{self}
	if len(opts.OperatorUsernames) == 0 {
		opts.OperatorUsernames = []string{OperatorServiceAccountUsername(opts.OperatorNamespace)}
	}
	for _, u := range opts.OperatorUsernames {
		if !slices.Contains(operators, u) {
			operators = append(operators, u)
		}
	}
	mgr.GetWebhookServer().Register(PathManagedSecret, &ctrlwebhook.Admission{Handler: NewSecretGuard(mgr.GetScheme(), operators)})
	out := &Webhook{Operators: operators}

	if !opts.ManageCertificates {
		return out, nil
	}
	certOpts := opts.Certificates
	certOpts.Namespace = opts.OperatorNamespace
	certOpts.ConfigurationName = opts.ConfigurationName
	certOpts.Clock = opts.Clock
	certOpts.DNSNames = servingDNSNames(opts.ServiceName, opts.OperatorNamespace)
	certOpts.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	certOpts.MutateConfiguration = adaptConfiguration(opts.OperatorNamespace, operators)
	certs, err := webhookcert.New(mgr.GetAPIReader(), mgr.GetClient(), certOpts)
	if err != nil {
		return nil, err
	}
	srv, ok := mgr.GetWebhookServer().(*ctrlwebhook.DefaultServer)
	if !ok {
		return nil, fmt.Errorf("webhook: managed certificates need controller-runtime's DefaultServer, got %T", mgr.GetWebhookServer())
	}
	srv.Options.TLSOpts = append(srv.Options.TLSOpts, func(c *tls.Config) { c.GetCertificate = certs.GetCertificate })
	if err := mgr.Add(certs); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook-certificate", certs.Checker); err != nil {
		return nil, err
	}
	out.Certificates = certs
	return out, nil
}

// OperatorServiceAccount is the ServiceAccount config/rbac and config/manager give the operator.
const OperatorServiceAccount = "keycap-manager"

// OperatorServiceAccountUsername is the username of the operator's ServiceAccount in namespace.
func OperatorServiceAccountUsername(namespace string) string {
	return "system:serviceaccount:" + namespace + ":" + OperatorServiceAccount
}

// servingDNSNames are the names the apiserver may call the webhook by: the Service in the
// cluster, and localhost for `make run`.
func servingDNSNames(service, namespace string) []string {
	return []string{
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
		service + "." + namespace,
		service,
		"localhost",
	}
}

// adaptConfiguration fits the tamper guard's selectors to the running operator: its namespace
// joins the excluded namespaces, and its identities replace the service account the manifests name
// in the not-the-operator matchCondition (e.g. the admin user of `make run`).
func adaptConfiguration(namespace string, operators []string) func(*admissionregistrationv1.ValidatingWebhookConfiguration) {
	quoted := make([]string, len(operators))
	for i, o := range operators {
		quoted[i] = strconv.Quote(o)
	}
	notOperator := "!(request.userInfo.username in [" + strings.Join(quoted, ", ") + "])"
	return func(vwc *admissionregistrationv1.ValidatingWebhookConfiguration) {
		for i := range vwc.Webhooks {
			w := &vwc.Webhooks[i]
			if w.Name != "vsecret.keycap.dev" {
				continue
			}
			if w.NamespaceSelector != nil {
				for j := range w.NamespaceSelector.MatchExpressions {
					e := &w.NamespaceSelector.MatchExpressions[j]
					if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpNotIn && !slices.Contains(e.Values, namespace) {
						e.Values = append(e.Values, namespace)
					}
				}
			}
			for j := range w.MatchConditions {
				if w.MatchConditions[j].Name == OperatorConditionName {
					w.MatchConditions[j].Expression = notOperator
				}
			}
		}
	}
}

// selfUsername asks the apiserver who this process is: the identity the controllers write
// Secrets as when they run in the same process.
func selfUsername(ctx context.Context, mgr ctrl.Manager) (string, error) {
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return "", err
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("webhook: learning the operator's own username (SelfSubjectReview): %w", err)
	}
	return review.Status.UserInfo.Username, nil
}
