package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/trellismesh/trellis/internal/analyze"
	"github.com/trellismesh/trellis/internal/config"
	"github.com/trellismesh/trellis/internal/identity"
	"github.com/trellismesh/trellis/internal/store"
	"github.com/trellismesh/trellis/internal/watch"
	"github.com/trellismesh/trellis/internal/xds"
)

// Options configure a control plane.
type Options struct {
	// ConfigPaths are the folders/files to watch; Recursive reads subfolders.
	ConfigPaths []string
	Recursive   bool
	// XDSAddress is the plaintext ADS listen address (loopback and tests
	// only), e.g. 127.0.0.1:15010. Ignored when XDSListener is set.
	XDSAddress  string
	XDSListener net.Listener
	Log         *slog.Logger
	// Debounce and MaxDelay tune push batching (see xds.Options).
	Debounce, MaxDelay time.Duration
	// Resync is the folder rescan period (see watch.Folder).
	Resync time.Duration
	// Transform adjusts each config file before the store gets it (see
	// watch.Folder).
	Transform func(*config.File)
	// SecureXDSAddress, when set, serves xDS and Istio's CA service over
	// TLS there (`trellis controlplane` uses DefaultSecureXDSAddress);
	// SecureXDSListener, when set, is used instead (a Unix socket in local
	// mode). With neither there is no secure port.
	SecureXDSAddress  string
	SecureXDSListener net.Listener
	// CADir keeps the CA's self-signed root across restarts (created 0700,
	// files 0600); empty keeps it in memory. PluginCADir is a user-supplied
	// CA in Istio's layout (ca-cert.pem, ca-key.pem, root-cert.pem,
	// cert-chain.pem) and wins over CADir.
	CADir, PluginCADir string
	// CertTTL is a certificate's lifetime when the caller asks for none
	// (default 24h); MaxCertTTL caps what a caller may ask (default 90
	// days).
	CertTTL, MaxCertTTL time.Duration
	// TrustDomain overrides MeshConfig's trustDomain (default
	// cluster.local).
	TrustDomain string
	// RootCertFile, when set, is kept holding the trust bundle (0600,
	// replaced whole) from start on, rewritten before the CA signs under a
	// changed bundle: the file sidecars are told to trust.
	RootCertFile string
	// Root rotation (rotation.go): RootTTL is a self-signed root's
	// lifetime, RootCheckInterval how often it is checked and
	// RootGracePeriodPercent how much of its life may be left before it
	// is rotated; zero takes Istio's CITADEL_SELF_SIGNED_CA_CERT_TTL,
	// CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL and
	// CITADEL_SELF_SIGNED_ROOT_CERT_GRACE_PERIOD_PERCENTILE from the
	// environment, else Istio's defaults (ten years, 1h, 20). A negative
	// interval turns the rotator off, as in Istio.
	RootTTL, RootCheckInterval time.Duration
	RootGracePeriodPercent     int
	// PluginCACheckInterval is how often the plug-in CA's files are looked
	// at for a replacement (default identity.DefaultPluginCheckInterval).
	PluginCACheckInterval time.Duration
	// servingCertTTL is the secure port's certificate lifetime (default
	// CertTTL); tests shorten it to see it renewed.
	servingCertTTL time.Duration
	// DebugAddress, when set, serves Go's runtime profiles
	// (/debug/pprof/) over plain HTTP; keep it on loopback. When empty,
	// the environment variable TRELLIS_DEBUG_ADDRESS is used, so that a
	// benchmark can profile the `trellis controlplane` binary.
	DebugAddress string
	// MonitoringAddress, when set, serves Prometheus metrics at /metrics
	// (istiod's monitoring port; `trellis controlplane` uses
	// DefaultMonitoringAddress); MonitoringListener, when set, is used
	// instead (a Unix socket in local mode). With neither there is none.
	MonitoringAddress  string
	MonitoringListener net.Listener
}

// DebugAddressEnv names the environment variable read when
// Options.DebugAddress is empty.
const DebugAddressEnv = "TRELLIS_DEBUG_ADDRESS"

// ControlPlane is a started control plane.
type ControlPlane struct {
	Store *store.Store
	XDS   *xds.Server
	Addr  net.Addr

	ca                  *identity.CA
	secureAddr          net.Addr
	monitoringAddr      net.Addr
	trustDomainOverride string

	grpc   *grpc.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error
}

// Start loads the config (synchronously, so the first proxies get it),
// starts serving ADS and begins watching. Stop (or ctx ending) shuts it
// down.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	log := opts.Log
	if log == nil {
		log = slog.Default()
	}
	st := store.New(log)
	cpm := newCPMetrics()
	folder := &watch.Folder{Paths: opts.ConfigPaths, Recursive: opts.Recursive, Sink: countingSink{Sink: st, m: cpm}, Log: log, Resync: opts.Resync, Transform: opts.Transform}
	if err := folder.Load(); err != nil {
		folder.Close()
		return nil, fmt.Errorf("cannot load config: %w", err)
	}
	td := trustDomain(opts.TrustDomain, st)
	rot, err := rotationFromEnv(opts)
	if err != nil {
		folder.Close()
		return nil, err
	}
	ca, err := newCA(opts, rot, td, log)
	if err != nil {
		folder.Close()
		return nil, err
	}
	// Listeners opened here are closed again if a later one fails.
	var opened []net.Listener
	fail := func(err error) (*ControlPlane, error) {
		folder.Close()
		for _, l := range opened {
			l.Close()
		}
		return nil, err
	}
	lis := opts.XDSListener
	if lis == nil {
		addr := opts.XDSAddress
		if addr == "" {
			addr = "127.0.0.1:15010"
		}
		lis, err = net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("cannot listen for xDS on %s: %w (is another control plane running? pick another address with --xds-address)", addr, err))
		}
		opened = append(opened, lis)
	}
	secureLis := opts.SecureXDSListener
	if secureLis == nil && opts.SecureXDSAddress != "" {
		secureLis, err = net.Listen("tcp", opts.SecureXDSAddress)
		if err != nil {
			return fail(fmt.Errorf("cannot listen for secure xDS on %s: %w (is another control plane running? pick another address with --secure-xds-address)", opts.SecureXDSAddress, err))
		}
		opened = append(opened, secureLis)
	}
	debugAddr := opts.DebugAddress
	if debugAddr == "" {
		debugAddr = os.Getenv(DebugAddressEnv)
	}
	monLis := opts.MonitoringListener
	if monLis == nil && opts.MonitoringAddress != "" {
		monLis, err = net.Listen("tcp", opts.MonitoringAddress)
		if err != nil {
			return fail(fmt.Errorf("cannot listen for metrics on %s: %w (is another control plane running? pick another address with --monitoring-addr, or \"\" for none)", opts.MonitoringAddress, err))
		}
		opened = append(opened, monLis)
	}
	var debugLis net.Listener
	if debugAddr != "" {
		debugLis, err = net.Listen("tcp", debugAddr)
		if err != nil {
			return fail(fmt.Errorf("cannot listen for debug on %s: %w", debugAddr, err))
		}
	}
	srv := xds.New(xds.Options{Store: st, Log: log, Debounce: opts.Debounce, MaxDelay: opts.MaxDelay})
	g := grpc.NewServer(append(xds.ServerOptions(),
		// Thousands of proxies hold one long stream each.
		grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	srv.Register(g)

	ctx, cancel := context.WithCancel(ctx)
	cp := &ControlPlane{Store: st, XDS: srv, Addr: lis.Addr(), ca: ca, trustDomainOverride: opts.TrustDomain, grpc: g, cancel: cancel}
	reg, err := newRegistry(cp, cpm)
	if err != nil {
		cancel()
		return fail(err)
	}
	cp.goRun(func() error { return srv.Run(ctx) })
	cp.goRun(func() error { return folder.Run(ctx) })
	cp.goRun(func() error { reportAnalysis(ctx, st, log); return nil })
	cp.goRun(func() error { reportUnenforced(ctx, st, log); return nil })
	cp.goRun(func() error { return runRotation(ctx, ca, opts, rot, log) })
	cp.goRun(func() error {
		if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("xDS server: %w", err)
		}
		return nil
	})
	cp.goRun(func() error {
		<-ctx.Done()
		g.Stop()
		return nil
	})
	if secureLis != nil {
		ttl := opts.servingCertTTL
		if ttl == 0 {
			ttl = ca.DefaultTTL()
		}
		sg := newSecureServer(ca, td, srv, log, ttl, cpm)
		cp.secureAddr = secureLis.Addr()
		cp.goRun(func() error {
			if err := sg.Serve(secureLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("secure xDS server: %w", err)
			}
			return nil
		})
		cp.goRun(func() error {
			<-ctx.Done()
			sg.Stop()
			return nil
		})
		log.Info("control plane serving xDS and the CA over TLS", "address", secureLis.Addr().String(), "trust domain", td)
		if opts.CADir == "" && opts.PluginCADir == "" {
			log.Warn("the CA's root is in memory only: certificates it issued stop verifying when the control plane restarts (set a CA directory to keep it)")
		}
	}
	if monLis != nil {
		cp.serveMonitoring(ctx, monLis, reg, log)
	}
	if debugLis != nil {
		hs := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second}
		cp.goRun(func() error {
			if err := hs.Serve(debugLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("debug server: %w", err)
			}
			return nil
		})
		cp.goRun(func() error {
			<-ctx.Done()
			_ = hs.Close()
			return nil
		})
		log.Info("control plane serving profiles", "address", debugLis.Addr().String())
	}
	log.Info("control plane serving xDS", "address", lis.Addr().String(), "config", opts.ConfigPaths)
	return cp, nil
}

// debugHandler serves Go's runtime profiles. The routes are explicit
// rather than pprof's registration on http.DefaultServeMux.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

func (cp *ControlPlane) goRun(f func() error) {
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		if err := f(); err != nil {
			cp.errMu.Lock()
			if cp.err == nil {
				cp.err = err
			}
			cp.errMu.Unlock()
			cp.cancel()
		}
	}()
}

// Wait blocks until the control plane has stopped and returns the first
// error that stopped it.
func (cp *ControlPlane) Wait() error {
	cp.wg.Wait()
	cp.errMu.Lock()
	defer cp.errMu.Unlock()
	return cp.err
}

// Stop shuts everything down and waits for it.
func (cp *ControlPlane) Stop() error {
	cp.cancel()
	return cp.Wait()
}

// reportAnalysis logs cross-object findings as the config changes. Live
// edits arrive one at a time, so findings are only reported, never used to
// reject anything: apply order must not matter. Each finding is logged once,
// when it first appears.
func reportAnalysis(ctx context.Context, st *store.Store, log *slog.Logger) {
	changes, stop := st.Subscribe()
	defer stop()
	seen := map[string]bool{}
	report := func() {
		now := map[string]bool{}
		for _, m := range analyze.Run(st.Snapshot().Objects) {
			s := m.String()
			now[s] = true
			if seen[s] {
				continue
			}
			switch m.Severity {
			case analyze.Error:
				log.Error("config analysis", "finding", s)
			case analyze.Warning:
				log.Warn("config analysis", "finding", s)
			default:
				log.Info("config analysis", "finding", s)
			}
		}
		seen = now
	}
	eachChange(ctx, changes, report)
}

// eachChange runs report now and after every change until ctx ends.
func eachChange(ctx context.Context, changes <-chan struct{}, report func()) {
	report()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			report()
		}
	}
}
