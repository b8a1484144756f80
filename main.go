// Command keycap is the keycap operator: the credential controllers, the validating webhook and
// the ext_authz data plane in one binary, its components chosen by --components.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	keycapv1alpha1 "github.com/keycap-dev/keycap/api/v1alpha1"
	"github.com/keycap-dev/keycap/controllers"
	"github.com/keycap-dev/keycap/internal/authz"
	"github.com/keycap-dev/keycap/internal/localcluster"
	"github.com/keycap-dev/keycap/internal/routepolicy"
	"github.com/keycap-dev/keycap/internal/signing"
	"github.com/keycap-dev/keycap/webhook"
)

const (
	componentControllers = "controllers"
	componentWebhook     = "webhook"
	componentAuthz       = "authz"
)

var allComponents = []string{componentControllers, componentWebhook, componentAuthz}

type options struct {
	components         string
	localControlPlane  string
	localAPIServerPort int
	localEtcdPort      int
	operatorNamespace  string
	issuer             string
	// signingKeyRotation is how long a signing key signs (signing.Policy.RotateEvery).
	signingKeyRotation time.Duration
	issuerSet          bool
	metricsAddr        string
	pprofAddr          string
	metricsSecure      bool
	probeAddr          string
	webhookHost        string
	webhookPort        int
	webhookCertDir     string
	webhookConfig      string
	webhookService     string
	operatorUsernames  string
	grpcAddr           string
	httpAddr           string
	extraKeyHeaders    string
	compatBodies       bool
	trustedAttrs       routepolicy.Source
	lastUsedWrites     float64
	leaderElect        bool
	leaderElectionID   string
	leaseDuration      time.Duration
	renewDeadline      time.Duration
	retryPeriod        time.Duration
	sso                ssoFlags
	// shardNamespaces and shardSelector restrict a standalone data plane to a tenant shard.
	shardNamespaces string
	shardSelector   string
}

func main() {
	var o options
	flag.StringVar(&o.components, "components", strings.Join(allComponents, ","),
		"Comma-separated components to run: controllers (leader-elected), webhook, authz (the data plane).")
	flag.StringVar(&o.localControlPlane, "local-control-plane", "",
		"Start etcd, kube-apiserver and kube-controller-manager on 127.0.0.1 with their state in `DIR`, write DIR/kubeconfig, install the CRDs and the webhook configuration, and run keycap against them (what make run does).")
	flag.IntVar(&o.localAPIServerPort, "local-apiserver-port", localcluster.DefaultAPIServerPort, "Port of the local control plane's kube-apiserver on 127.0.0.1.")
	flag.IntVar(&o.localEtcdPort, "local-etcd-port", localcluster.DefaultEtcdPort, "Client port of the local control plane's etcd on 127.0.0.1.")
	flag.StringVar(&o.operatorNamespace, "operator-namespace", envOr("POD_NAMESPACE", "keycap-system"),
		"Namespace of the operator's own Secrets (webhook certificates, AppToken signing keys).")
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 disables it.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "Address of Go's /debug/pprof profiles (CPU, heap, goroutines); 0 (the default) disables it. Bind it to 127.0.0.1 or a port no one else reaches: profiles expose the process's memory layout.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", false,
		"Serve metrics over HTTPS, only to callers the apiserver authenticates (TokenReview) and authorizes for GET /metrics (SubjectAccessReview); the cluster manifests turn it on.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.StringVar(&o.webhookHost, "webhook-host", "", "Address the webhook server binds to (empty: all interfaces).")
	flag.IntVar(&o.webhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	flag.StringVar(&o.webhookCertDir, "webhook-cert-dir", "", "Directory of the webhook's tls.crt/tls.key when certificates are managed outside keycap (cert-manager).")
	flag.StringVar(&o.webhookConfig, "webhook-configuration-name", "",
		"ValidatingWebhookConfiguration whose caBundle keycap manages (default "+webhook.ConfigurationName+"; with --local-control-plane "+localcluster.WebhookConfigurationName+").")
	flag.StringVar(&o.webhookService, "webhook-service-name", webhook.DefaultServiceName, "Service in front of the webhook, in the operator's namespace; the serving certificate names it.")
	flag.StringVar(&o.operatorUsernames, "operator-usernames", "",
		"Comma-separated usernames of the operator: besides keycap's own identity, only they may create and change the Secrets keycap manages (default: the ServiceAccount system:serviceaccount:<operator-namespace>:"+webhook.OperatorServiceAccount+").")
	flag.DurationVar(&o.signingKeyRotation, "signing-key-rotation", signing.DefaultRotateEvery,
		"How long each AppToken signing key signs before its successor (published half this long or an hour before, whichever is shorter) takes over. Replaced keys stay published for the longest token lifetime.")
	flag.StringVar(&o.grpcAddr, "grpc-bind-address", ":9001", "Address of the ext_authz gRPC server.")
	flag.StringVar(&o.issuer, "issuer", signing.DefaultIssuer,
		"The iss of AppTokens: the controllers sign with it and the data plane requires it. With --local-control-plane the default is the HTTP port's own URL (http://127.0.0.1:9002), which serves the discovery document and the JWKS.")
	flag.StringVar(&o.httpAddr, "http-bind-address", ":9002", "Address of the HTTP server: forward-auth /check, licence activation, the JWKS and OpenID discovery document, the licence public key.")
	flag.StringVar(&o.extraKeyHeaders, "extra-key-headers", "X-CapData-Token", "Comma-separated extra request headers that may carry an opaque key.")
	flag.BoolVar(&o.compatBodies, "compat-error-bodies", false, `Deny with the error bodies of the APIs keycap stands in for ({"error":"Unauthorized"} for 401, {"message":"Insufficient permissions"} for 403) instead of keycap's {"error":{"code","message","reason"}}.`)
	o.trustedAttrs = routepolicy.SourceEnvoy
	flag.Func("trusted-request-attributes", "Where forward-auth requests state the original host, path and method that RoutePolicies match: envoy (the path after /check and Host: Envoy, Istio, Envoy Gateway HTTP ext_authz), forwarded (X-Forwarded-Host/-Uri/-Method: Traefik, Caddy) or original-url (X-Original-URL/-Method: ingress-nginx). Default envoy; gRPC always uses Envoy's attributes.",
		func(v string) (err error) { o.trustedAttrs, err = routepolicy.ParseSource(v); return err })
	flag.Float64Var(&o.lastUsedWrites, "last-used-writes-per-second", 50,
		"Most status.lastUsedAt patches the data plane sends per second (each credential at most once a minute); 0 turns lastUsedAt writes off.")
	flag.StringVar(&o.shardNamespaces, "authz-namespaces", "",
		"Comma-separated namespaces a data plane alone (--components=authz) serves: a shard by tenant. Its informers watch only these, a key of any other namespace is NOT_FOUND. Empty: every namespace.")
	flag.StringVar(&o.shardSelector, "authz-namespace-selector", "",
		"Label selector of the namespaces a data plane alone serves (with --authz-namespaces: both). Resolved once at startup; a namespace labelled later is served after a restart. Needs list on namespaces.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader among controller replicas (the data plane never needs it).")
	flag.StringVar(&o.leaderElectionID, "leader-election-id", "keycap.keycap.dev", "Name of the leader election Lease.")
	flag.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a non-leader waits before it may take over an unrenewed lease.")
	flag.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader keeps trying to renew before it gives up leadership.")
	flag.DurationVar(&o.retryPeriod, "leader-elect-retry-period", 2*time.Second, "How often candidates retry acquiring or renewing the lease.")
	o.sso.bind(flag.CommandLine)
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { o.issuerSet = o.issuerSet || f.Name == "issuer" })
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(o); err != nil {
		// One readable line for a person at a terminal (a port in use, a missing binary), not a
		// log record with a stack trace.
		fmt.Fprintf(os.Stderr, "keycap stopped: %v\n", err)
		os.Exit(1)
	}
}

func run(o options) error {
	log := ctrl.Log.WithName("setup")
	components, err := parseComponents(o.components)
	if err != nil {
		return err
	}
	if o.signingKeyRotation < 10*time.Second {
		return fmt.Errorf("--signing-key-rotation=%s: a signing key must sign for at least 10s", o.signingKeyRotation)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var cfg *rest.Config
	if o.localControlPlane != "" {
		assets := os.Getenv("KUBEBUILDER_ASSETS")
		if assets == "" {
			return errors.New("--local-control-plane needs KUBEBUILDER_ASSETS (the directory hack/build-control-plane.sh prints); `make run` sets it")
		}
		dir, err := filepath.Abs(o.localControlPlane)
		if err != nil {
			return err
		}
		log.Info("starting the local control plane", "dir", dir)
		var webhookURL string // without the webhook component, no webhook configuration may block writes
		if components[componentWebhook] {
			webhookURL = fmt.Sprintf("https://127.0.0.1:%d", o.webhookPort)
		}
		cluster, err := localcluster.Start(ctx, localcluster.Options{
			Dir:               dir,
			AssetsDir:         assets,
			OperatorNamespace: o.operatorNamespace,
			WebhookURL:        webhookURL,
			APIServerPort:     o.localAPIServerPort,
			EtcdPort:          o.localEtcdPort,
			Listeners:         listeners(o, components),
		})
		if err != nil {
			return fmt.Errorf("starting the local control plane: %w", err)
		}
		defer func() {
			if err := cluster.Stop(); err != nil {
				log.Error(err, "stopping the local control plane")
			}
		}()
		// keycap writes as its own identity, not as the person holding the admin kubeconfig, so
		// the tamper guard tells them apart as it does in a cluster.
		if cfg, err = cluster.OperatorConfig(); err != nil {
			return fmt.Errorf("starting the local control plane: %w", err)
		}
		log.Info("local control plane running", "kubeconfig", cluster.KubeconfigPath)
		if !o.issuerSet {
			// Nothing on this machine resolves the in-cluster default; the HTTP port serves the
			// discovery document and the JWKS, so verifiers can follow the issuer.
			o.issuer = localIssuer(o.httpAddr)
		}
	} else {
		if cfg, err = ctrl.GetConfig(); err != nil {
			return fmt.Errorf("loading kubeconfig: %w", err)
		}
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := keycapv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}

	metricsOpts := metricsserver.Options{BindAddress: o.metricsAddr}
	if o.metricsSecure {
		metricsOpts.SecureServing = true
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	if o.webhookConfig == "" {
		o.webhookConfig = webhook.ConfigurationName
		if o.localControlPlane != "" {
			o.webhookConfig = localcluster.WebhookConfigurationName
		}
	}
	mgrOpts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsOpts,
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       o.pprofAddr,
		LeaderElection:         o.leaderElect && components[componentControllers],
		LeaderElectionID:       o.leaderElectionID,
		// Hand the lease over at once on a clean stop instead of making the next leader wait it out.
		LeaderElectionReleaseOnCancel: true,
		LeaderElectionNamespace:       o.operatorNamespace,
		LeaseDuration:                 &o.leaseDuration,
		RenewDeadline:                 &o.renewDeadline,
		RetryPeriod:                   &o.retryPeriod,
	}
	// shard is the namespaces of a data plane sharded by tenant (none: every namespace).
	var shard []string
	if len(components) == 1 && components[componentAuthz] {
		// The data plane alone: the credentials never enter its cache (its index follows them
		// itself); what the cache holds, of its shard's namespaces when it is sharded.
		if o.shardNamespaces != "" || o.shardSelector != "" {
			reader, err := client.New(cfg, client.Options{Scheme: scheme})
			if err != nil {
				return fmt.Errorf("creating a client: %w", err)
			}
			if shard, err = authz.ShardNamespaces(context.Background(), reader, splitList(o.shardNamespaces), o.shardSelector); err != nil {
				return err
			}
			log.Info("data plane shard", "namespaces", shard)
		}
		mgrOpts.Cache = authz.StandaloneCacheOptions(shard...)
	} else {
		// The controllers and the webhook: their caches without managedFields and
		// last-applied annotations.
		mgrOpts.Cache = controllers.CacheOptions()
	}
	if !(len(components) == 1 && components[componentAuthz]) && (o.shardNamespaces != "" || o.shardSelector != "") {
		return errors.New("--authz-namespaces and --authz-namespace-selector shard a data plane running alone (--components=authz)")
	}
	if components[componentWebhook] {
		mgrOpts.WebhookServer = ctrlwebhook.NewServer(ctrlwebhook.Options{
			Host:    o.webhookHost,
			Port:    o.webhookPort,
			CertDir: o.webhookCertDir,
		})
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}

	if components[componentControllers] {
		if err := controllers.SetupWithManager(mgr, controllers.Options{
			Clock:              clock.RealClock{},
			OperatorNamespace:  o.operatorNamespace,
			Issuer:             o.issuer,
			SigningKeyRotation: o.signingKeyRotation,
		}); err != nil {
			return fmt.Errorf("setting up the controllers: %w", err)
		}
	}
	if components[componentWebhook] {
		if err := webhook.SetupWithManager(mgr, webhook.Options{
			OperatorNamespace:  o.operatorNamespace,
			ManageCertificates: o.webhookCertDir == "",
			ConfigurationName:  o.webhookConfig,
			ServiceName:        o.webhookService,
			OperatorUsernames:  splitList(o.operatorUsernames),
		}); err != nil {
			return fmt.Errorf("setting up the webhook: %w", err)
		}
	}
	var dataPlane *authz.DataPlane
	if components[componentAuthz] {
		if dataPlane, err = authz.SetupWithManager(mgr, authz.Options{
			GRPCAddr:                 o.grpcAddr,
			Namespaces:               shard,
			HTTPAddr:                 o.httpAddr,
			ExtraKeyHeaders:          splitList(o.extraKeyHeaders),
			CompatBodies:             o.compatBodies,
			TrustedRequestAttributes: o.trustedAttrs,
			LastUsedWritesPerSecond:  o.lastUsedWrites,
			DisableLastUsed:          o.lastUsedWrites <= 0,
			OperatorNamespace:        o.operatorNamespace,
			Issuer:                   o.issuer,
			SSO:                      o.sso.options(),
			SessionOrigins:           o.sso.origins(),
		}); err != nil {
			return fmt.Errorf("setting up the data plane: %w", err)
		}
	}

	go announceReady(ctx, mgr, components, dataPlane)
	log.Info("starting keycap", "components", o.components)
	return mgr.Start(ctx)
}

// announceReady prints the `keycap ready` line that scripts wait for (the contract README's "Two commands" states for
// `make run`) once the caches have synced and, when the data plane runs, once it is serving.
func announceReady(ctx context.Context, mgr ctrl.Manager, components map[string]bool, dataPlane *authz.DataPlane) {
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return
	}
	if dataPlane != nil && !dataPlane.WaitServing(ctx) {
		return
	}
	names := make([]string, 0, len(components))
	for _, c := range allComponents {
		if components[c] {
			names = append(names, c)
		}
	}
	ctrl.Log.Info("keycap ready", "components", strings.Join(names, ","))
}

// listeners are keycap's own listening addresses for the components that run, with what each is
// and the flag that moves it.
func listeners(o options, components map[string]bool) []localcluster.Listener {
	ls := []localcluster.Listener{
		{Addr: o.metricsAddr, What: "metrics, --metrics-bind-address"},
		{Addr: o.probeAddr, What: "health probes, --health-probe-bind-address"},
	}
	if components[componentWebhook] {
		ls = append(ls, localcluster.Listener{Addr: net.JoinHostPort(o.webhookHost, strconv.Itoa(o.webhookPort)), What: "admission webhook, --webhook-port"})
	}
	if components[componentAuthz] {
		ls = append(ls,
			localcluster.Listener{Addr: o.grpcAddr, What: "ext_authz gRPC, --grpc-bind-address"},
			localcluster.Listener{Addr: o.httpAddr, What: "HTTP: /check, activation, JWKS, --http-bind-address"})
	}
	return ls
}

// localIssuer is the issuer of AppTokens on a local control plane: the URL of the HTTP port at
// httpAddr, on 127.0.0.1 when it listens on every interface.
func localIssuer(httpAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return signing.DefaultIssuer
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func parseComponents(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, c := range splitList(s) {
		if !slices.Contains(allComponents, c) {
			return nil, fmt.Errorf("unknown component %q; known: %s", c, strings.Join(allComponents, ", "))
		}
		out[c] = true
	}
	if len(out) == 0 {
		return nil, errors.New("--components names no component")
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
