// Package authz is keycap's data plane: Envoy ext_authz over gRPC, HTTP forward-auth, licence
// activation, SSO links and the JWKS, all answered from the in-memory credential index
// (internal/index), which a list-and-watch of each credential CRD keeps current. The only Secret it
// reads is the session keys' (SSO sessions, internal/sso).
//
// It runs in the manager as a Runnable that needs no leader election, so every replica serves.
// It fails closed: until its watches have listed it is not ready and every check is denied
// with NOT_READY; a panic or any internal error denies with INTERNAL.
package authz

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/keycap-dev/keycap/internal/activation"
	"github.com/keycap-dev/keycap/internal/apptoken"
	"github.com/keycap-dev/keycap/internal/authz/wire"
	"github.com/keycap-dev/keycap/internal/index"
	"github.com/keycap-dev/keycap/internal/registry"
	"github.com/keycap-dev/keycap/internal/routepolicy"
	"github.com/keycap-dev/keycap/internal/sessionkeys"
	"github.com/keycap-dev/keycap/internal/signing"
	"github.com/keycap-dev/keycap/internal/sso"
)

// The data plane reads the credential kinds and writes only their status (lastUsedAt). Its only
// Secret verb is get on the session-key Secret (below). `make manifests` writes these into config/rbac/authz.
// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys;agentkeys;apptokens;licenses,verbs=get;list;watch
// +kubebuilder:rbac:groups=keycap.dev,resources=apikeys/status;agentkeys/status;apptokens/status;licenses/status,verbs=patch
// It reads the public signing keys (the ConfigMap keycap-public-keys in the operator namespace;
// never the Secret) with uncached gets, and licence activations patch License status (above) after
// an uncached get of the License. That one ConfigMap is all it may read besides the four kinds.
// +kubebuilder:rbac:groups="",namespace=keycap-system,resources=configmaps,resourceNames=keycap-public-keys,verbs=get
// SSO sessions: it reads the session keys (the one Secret keycap-session-keys; a session key
// seals as well as opens, so there is no public half to publish) and records each redeemed login
// link by creating a Lease named after it (internal/sso/links.go), which makes a link single-use
// across replicas. It may not read, change or delete Leases.
// +kubebuilder:rbac:groups="",namespace=keycap-system,resources=secrets,resourceNames=keycap-session-keys,verbs=get
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=keycap-system,resources=leases,verbs=create

// Options configure the data plane.
type Options struct {
	// GRPCAddr is where the ext_authz gRPC server listens.
	GRPCAddr string
	// HTTPAddr is where forward-auth, activation, SSO and the JWKS are served.
	HTTPAddr string
	// ExtraKeyHeaders are request headers, besides x-api-key and Authorization, that may carry a
	// key. Nil means DefaultExtraKeyHeaders; an empty non-nil slice means none.
	ExtraKeyHeaders []string
	// CompatBodies switches denial bodies to the seeds' APIs' shapes.
	CompatBodies bool
	// OperatorNamespace holds the AppToken signing keys whose public half the JWKS publishes.
	OperatorNamespace string
	// Issuer is the iss AppTokens must carry (default signing.DefaultIssuer); the controllers
	// must sign with the same.
	Issuer string
	// JWKSURI is the jwks_uri of the OpenID configuration (default: the issuer's
	// /.well-known/jwks.json).
	JWKSURI string
	// PublicKeysRefreshInterval is how often the public keys are re-read (default
	// signing.DefaultRefreshInterval). The refresh runs on the real clock.
	PublicKeysRefreshInterval time.Duration
	// TokenLeeway is the clock skew allowed on AppTokens' exp, nbf and iat (default
	// apptoken.DefaultLeeway).
	TokenLeeway time.Duration

	// Clock judges expiry and throttles lastUsedAt writes. Defaults to the real clock.
	Clock clock.WithTicker
	// LastUsedFlushInterval is how often recorded uses are written to status.lastUsedAt
	// (default 10s). Each credential is written at most once per LastUsedThrottle per replica.
	LastUsedFlushInterval time.Duration
	// LastUsedWritesPerSecond bounds the lastUsedAt patches per second this replica sends
	// (default 50).
	LastUsedWritesPerSecond float64
	// DisableLastUsed turns off lastUsedAt writes (the data plane then needs no status verbs).
	DisableLastUsed bool

	// SSO configures the SSO login endpoints (portal and login URLs, returnTo allow-list,
	// session lifetime); its Clock is the data plane's.
	SSO sso.Options
	// SessionOrigins are the Origins a request only the session cookie authenticates may come
	// from with an unsafe method when the browser sends no Sec-Fetch-Site (the CSRF rule).
	SessionOrigins []string
	// DisableSSO turns off sessions and the SSO endpoints (the data plane then needs neither the
	// session-key Secret nor Leases).
	DisableSSO bool
	// LoginLinkClaimer records the single use of login links (default: a Lease per redeemed link
	// in OperatorNamespace, sso.LeaseClaimer).
	LoginLinkClaimer sso.Claimer
	// SessionKeysRefreshInterval is how often the session keys are re-read (default
	// sessionkeys.DefaultRefreshInterval).
	SessionKeysRefreshInterval time.Duration

	// TrustedRequestAttributes says where forward-auth requests state the original request's
	// host, path and method, which RoutePolicies are matched on (default routepolicy.SourceEnvoy;
	// gRPC always uses Envoy's attributes).
	TrustedRequestAttributes routepolicy.Source

	// Namespaces shard the data plane by tenant: its index lists and watches only the credentials
	// of these namespaces (one watch per namespace and kind), so a key of any other namespace is
	// NOT_FOUND and the replica holds only its shard's credentials. None means every namespace.
	// The manager's cache should be StandaloneCacheOptions(Namespaces...), so RoutePolicies are
	// sharded alike.
	Namespaces []string
}

// DataPlane is the running data plane.
type DataPlane struct {
	opts    Options
	index   *index.Index
	feed    *index.Feed
	authz   authorizer
	sources *wire.Sources
	usage   *usageRecorder
	synced  func() bool
	routes  *routePolicies

	publicKeys *signing.PublicKeys
	verifier   *apptoken.Verifier
	activator  *activation.Activator

	// sessionKeys and sso are nil with DisableSSO.
	sessionKeys *sessionkeys.Reader
	sso         *sso.Handler

	// listening is set once both listeners are open; serving is closed once the data plane is
	// listening and synced.
	listening   atomic.Bool
	isServing   atomic.Bool
	serving     chan struct{}
	servingOnce sync.Once

	addrMu   sync.Mutex
	grpcAddr net.Addr
	httpAddr net.Addr
}

var (
	_ manager.Runnable               = (*DataPlane)(nil)
	_ manager.LeaderElectionRunnable = (*DataPlane)(nil)
)

// SetupWithManager adds the data plane's servers and its readiness check to mgr.
func SetupWithManager(mgr ctrl.Manager, opts Options) (*DataPlane, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.ExtraKeyHeaders == nil {
		opts.ExtraKeyHeaders = wire.DefaultExtraKeyHeaders
	}
	dp := &DataPlane{
		opts:    opts,
		index:   index.New(),
		serving: make(chan struct{}),
	}
	dp.sources = wire.NewSources(opts.ExtraKeyHeaders)
	sources, err := credentialSources(mgr, opts.Namespaces)
	if err != nil {
		return nil, err
	}
	dp.feed = dp.index.NewFeed(sources, project)
	dp.publicKeys = signing.NewPublicKeys(mgr.GetAPIReader(), signing.PublicKeysOptions{
		Namespace:       opts.OperatorNamespace,
		Issuer:          opts.Issuer,
		JWKSURI:         opts.JWKSURI,
		RefreshInterval: opts.PublicKeysRefreshInterval,
	})
	if err := mgr.Add(dp.publicKeys); err != nil {
		return nil, err
	}
	if dp.routes, err = newRoutePolicies(mgr, opts.TrustedRequestAttributes, opts.Namespaces); err != nil {
		return nil, err
	}
	// The credential watches, the public keys and the RoutePolicies: tokens cannot be verified before the keys are read,
	// nor a RoutePolicy applied before it is known.
	dp.synced = func() bool { return dp.feed.Synced() && dp.publicKeys.HasSynced() && dp.routes.synced() }
	issuer := opts.Issuer
	if issuer == "" {
		issuer = signing.DefaultIssuer
	}
	dp.verifier = apptoken.NewVerifier(dp.publicKeys, apptoken.VerifierOptions{
		Issuer: issuer,
		Leeway: opts.TokenLeeway,
		Clock:  opts.Clock,
	})
	// Activations read the License fresh from the apiserver and write its status with
	// optimistic concurrency; the index only finds which License a key belongs to.
	dp.activator = activation.NewActivator(dp.index, mgr.GetAPIReader(), mgr.GetClient(), opts.Clock)
	dp.authz = authorizer{index: dp.index, clock: opts.Clock, ready: dp.ready, verifier: dp.verifier}
	if !opts.DisableSSO {
		if err := dp.setupSSO(mgr); err != nil {
			return nil, err
		}
	}
	if !opts.DisableLastUsed {
		dp.usage = newUsageRecorder(mgr.GetClient(), opts.Clock, opts.LastUsedFlushInterval, opts.LastUsedWritesPerSecond)
	}
	if err := mgr.AddReadyzCheck("authz", func(*http.Request) error {
		if !dp.ready() {
			return errors.New("the data plane has not listed every credential kind, its public keys are not read or its listeners are not open")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := mgr.Add(dp); err != nil {
		return nil, err
	}
	return dp, nil
}

// setupSSO adds the session credential source and the SSO endpoints.
func (dp *DataPlane) setupSSO(mgr ctrl.Manager) error {
	opts := dp.opts
	dp.sessionKeys = sessionkeys.NewReader(mgr.GetAPIReader(), opts.OperatorNamespace, opts.SessionKeysRefreshInterval, nil)
	if err := mgr.Add(dp.sessionKeys); err != nil {
		return err
	}
	dp.authz.sessions = &sessions{keys: dp.sessionKeys.Keys}
	dp.sources.SetSessionOrigins(opts.SessionOrigins)
	claimer := opts.LoginLinkClaimer
	if claimer == nil {
		holder, _ := os.Hostname()
		claimer = &sso.LeaseClaimer{Client: mgr.GetClient(), Namespace: opts.OperatorNamespace, Holder: holder, Clock: opts.Clock}
	}
	ssoOpts := opts.SSO
	ssoOpts.Clock = opts.Clock
	dp.sso = sso.New(ssoOpts, ssoCredentials{dp: dp}, dp.sessionKeys.Keys, claimer)
	return nil
}

// NeedLeaderElection is false: every replica serves.
func (dp *DataPlane) NeedLeaderElection() bool { return false }

// ready reports whether the data plane may allow requests: its watches have delivered their
// initial lists. Until then every check is denied.
func (dp *DataPlane) ready() bool {
	if dp.isServing.Load() {
		return true
	}
	return dp.synced() && dp.listening.Load()
}

// check is what every transport does with a request in its one form: take the credential from
// its sources (a licence and a key at once are AMBIGUOUS), settle readiness, decide, and record
// use of an allowed credential.
func (dp *DataPlane) check(f *wire.Form, req *Requirements, aud Audience) (wire.Presented, Decision) {
	p, reason := dp.sources.Extract(f)
	if reason != wire.ReasonOK {
		if reason == wire.ReasonMissing && !dp.ready() {
			reason = wire.ReasonNotReady
		}
		if p.Session {
			sso.SessionCheckCounters[sessionResult(reason)].Inc()
		}
		return p, Decision{Reason: reason}
	}
	d := dp.authz.decide(&p, req, aud)
	if d.Allowed() && dp.usage != nil {
		dp.usage.record(d.slot, d.Credential, dp.authz.now())
	}
	if p.Session {
		sso.SessionCheckCounters[sessionResult(d.Reason)].Inc()
	}
	return p, d
}

// Start serves gRPC and HTTP until ctx ends.
func (dp *DataPlane) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("authz")
	var lc net.ListenConfig
	grpcLis, err := lc.Listen(ctx, "tcp", dp.opts.GRPCAddr)
	if err != nil {
		return fmt.Errorf("ext_authz gRPC listener: %w", err)
	}
	httpLis, err := lc.Listen(ctx, "tcp", dp.opts.HTTPAddr)
	if err != nil {
		_ = grpcLis.Close()
		return fmt.Errorf("forward-auth HTTP listener: %w", err)
	}
	dp.addrMu.Lock()
	dp.grpcAddr, dp.httpAddr = grpcLis.Addr(), httpLis.Addr()
	dp.addrMu.Unlock()

	gs := grpc.NewServer(GRPCServerOptions()...)
	authv3.RegisterAuthorizationServer(gs, &grpcServer{dp: dp})
	healthServer := health.NewServer()
	healthServer.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthServer.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, healthServer)
	reflection.Register(gs)

	httpServer := NewHTTPServer(dp.newHTTPMux())

	errs := make(chan error, 2)
	go func() { errs <- gs.Serve(grpcLis) }()
	go func() {
		if err := httpServer.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
			return
		}
		errs <- nil
	}()
	go dp.feed.Run(ctx)
	go dp.routes.run(ctx)
	dp.listening.Store(true)
	if dp.usage != nil {
		go dp.usage.run(ctx)
	}
	go dp.waitSynced(ctx, healthServer)
	go dp.reportIndexSize(ctx)
	log.Info("data plane listening", "grpc", grpcLis.Addr().String(), "http", httpLis.Addr().String())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errs:
	}
	healthServer.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = httpServer.Shutdown(shutdownCtx)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		gs.Stop()
	}
	if serveErr != nil {
		return fmt.Errorf("data plane server: %w", serveErr)
	}
	return nil
}

func (dp *DataPlane) waitSynced(ctx context.Context, healthServer *health.Server) {
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	for !dp.synced() {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
	dp.isServing.Store(true)
	healthServer.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthServer.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	dp.servingOnce.Do(func() { close(dp.serving) })
	// The initial lists' decoded objects are garbage now, and the heap grew to hold them: give
	// that memory back at once instead of over the scavenger's next minutes, so a fresh replica's
	// resident memory is its index, not its start-up.
	debug.FreeOSMemory()
	counts := make([]any, 0, 2*len(registry.Kinds()))
	for _, k := range registry.Kinds() {
		counts = append(counts, k.Resource, dp.index.Len(k.Name))
	}
	logf.FromContext(ctx).WithName("authz").Info("data plane serving: credentials listed, public keys read", counts...)
}

func (dp *DataPlane) reportIndexSize(ctx context.Context) {
	ticker := time.NewTicker(5 * time.Second)
	defer ticker.Stop()
	for {
		for _, k := range registry.Kinds() {
			indexedCredentials.WithLabelValues(k.Name).Set(float64(dp.index.Len(k.Name)))
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// WaitServing blocks until the data plane serves requests (its watches have listed and its
// listeners are open) or ctx ends; it reports whether it is serving.
func (dp *DataPlane) WaitServing(ctx context.Context) bool {
	select {
	case <-dp.serving:
		return true
	case <-ctx.Done():
		return false
	}
}

// GRPCAddr returns the address the gRPC server listens on, once it does (nil before).
func (dp *DataPlane) GRPCAddr() net.Addr {
	dp.addrMu.Lock()
	defer dp.addrMu.Unlock()
	return dp.grpcAddr
}

// HTTPAddr returns the address the HTTP server listens on, once it does (nil before).
func (dp *DataPlane) HTTPAddr() net.Addr {
	dp.addrMu.Lock()
	defer dp.addrMu.Unlock()
	return dp.httpAddr
}

// PublicKeys returns the data plane's view of the published signing keys.
func (dp *DataPlane) PublicKeys() *signing.PublicKeys { return dp.publicKeys }

// Index returns the credential index (read-only use: tests and diagnostics).
func (dp *DataPlane) Index() *index.Index { return dp.index }

// credentialSources are what the data plane's index follows: every credential kind of the
// registry, in each of namespaces or (none) in all of them.
func credentialSources(mgr ctrl.Manager, namespaces []string) ([]index.Source, error) {
	var sources []index.Source
	for _, k := range registry.Kinds() {
		lws, err := listWatches(mgr, k.GVK(), k.Resource, func() runtime.Object { return k.New() }, namespaces)
		if err != nil {
			return nil, err
		}
		for ns, lw := range lws {
			sources = append(sources, index.Source{Kind: k.Name, Namespace: ns, New: k.New, ListerWatcher: lw})
		}
	}
	return sources, nil
}
