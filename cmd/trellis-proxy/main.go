// Command trellis-proxy is Trellis's sidecar: it takes its config from the
// control plane over xDS and carries the pod's traffic (see
// internal/proxy/sidecar). Settings come from flags or, as an injected
// sidecar gets them, from the environment.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trellismesh/trellis/internal/proxy/apphealth"
	"github.com/trellismesh/trellis/internal/proxy/certs"
	"github.com/trellismesh/trellis/internal/proxy/sidecar"
	"github.com/trellismesh/trellis/internal/proxy/xdsclient"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "trellis-proxy:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// envDuration is a duration from the environment, def when unset.
func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 24h", name, v)
	}
	return d, nil
}

// firstCertLogEvery paces the errors logged while the first certificate
// is awaited.
var firstCertLogEvery = 10 * time.Second

// waitFirstCertificate holds the proxy back until it has a certificate:
// without one, xDS over mTLS and the mesh's mTLS cannot work. It logs an
// error with the reason at intervals while the CA does not issue one, and
// keeps waiting (a control plane starting later is normal); false means
// ctx ended first.
func waitFirstCertificate(ctx context.Context, mgr *certs.Manager, log *slog.Logger) bool {
	t := time.NewTicker(firstCertLogEvery)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-mgr.Ready():
			return true
		case <-ctx.Done():
			return false
		case <-t.C:
			log.Error("still no workload certificate; not connecting to the control plane until one is issued", "waited", time.Since(start).Round(time.Second), "err", mgr.Err())
		}
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("trellis-proxy", flag.ContinueOnError)
	defaultConcurrency := 1
	if v := os.Getenv("PROXY_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("PROXY_CONCURRENCY=%q: must be a whole number (0 means one thread per CPU)", v)
		}
		defaultConcurrency = n
	}
	xds := fs.String("xds", env("XDS_ADDRESS", "127.0.0.1:15010"), "control plane xDS address: host:port or unix:///path (env XDS_ADDRESS)")
	podIP := fs.String("pod-ip", env("POD_IP", ""), "the pod's IP (env POD_IP); required in explicit mode")
	podName := fs.String("pod-name", env("POD_NAME", ""), "the pod's name (env POD_NAME)")
	namespace := fs.String("namespace", env("POD_NAMESPACE", "default"), "the pod's namespace (env POD_NAMESPACE)")
	sa := fs.String("service-account", env("SERVICE_ACCOUNT", "default"), "the pod's service account (env SERVICE_ACCOUNT)")
	labels := fs.String("labels", env("POD_LABELS", ""), "the pod's labels, k=v,k2=v2 (env POD_LABELS)")
	workload := fs.String("workload", env("WORKLOAD_NAME", ""), "the pod's workload, e.g. its Deployment (env WORKLOAD_NAME)")
	mode := fs.String("mode", env("INTERCEPTION_MODE", "NONE"), "NONE (explicit: HTTP_PROXY and tunnel) or REDIRECT (transparent capture) (env INTERCEPTION_MODE)")
	adminSocket := fs.String("admin-socket", env("ADMIN_SOCKET", ""), "also serve admin on this Unix socket (env ADMIN_SOCKET)")
	maxConns := fs.Int("max-connections", 0, "downstream connections per listener; past it the forward proxy answers 503 (0: 100,000)")
	drain := fs.Duration("drain-duration", sidecar.DefaultDrainDuration, "how long requests in flight get to finish on SIGTERM")
	maxAge := sidecar.DefaultMaxConnectionAge
	if v := env("TRELLIS_MAX_CONNECTION_AGE", ""); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("TRELLIS_MAX_CONNECTION_AGE=%q: want a duration such as 5m, or 0 for none", v)
		}
		maxAge = d
	}
	fs.DurationVar(&maxAge, "max-connection-age", maxAge, "age (±10%) after which an outbound HTTP/2 or gRPC connection takes no new streams and closes once its streams finish, so long-lived connections reach new backends; a DestinationRule's connectionPool.tcp.maxConnectionDuration overrides it; 0 turns it off (env TRELLIS_MAX_CONNECTION_AGE)")
	level := fs.String("log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	defaultDNSCapture := false
	for _, name := range []string{"ISTIO_META_DNS_CAPTURE", "DNS_CAPTURE"} {
		if v := os.Getenv(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s=%q: must be true or false", name, v)
			}
			defaultDNSCapture = defaultDNSCapture || b
		}
	}
	dnsCapture := fs.Bool("dns-capture", defaultDNSCapture, fmt.Sprintf("in REDIRECT mode, answer the pod's captured DNS on 127.0.0.1:%d and [::1]:%[1]d: mesh names from the config, the rest forwarded to /etc/resolv.conf's first nameserver (env ISTIO_META_DNS_CAPTURE or DNS_CAPTURE)", sidecar.DNSPort))
	caAddr := fs.String("ca-address", env("CA_ADDR", ""), "the CA's address, host:port or unix:///path (env CA_ADDR; default: the xDS address)")
	rootCert := fs.String("root-cert", env("XDS_ROOT_CA", ""), "the mesh root certificate(s), PEM: when set, the proxy gets its certificate from the CA and speaks xDS over mTLS (env XDS_ROOT_CA)")
	credFD := fs.Int("credential-fd", -1, "an inherited file descriptor (a pipe) to read the pod's single-use credential from at start, then closed; preferred to a file, as the credential then never touches the disk (env TRELLIS_CREDENTIAL_FD)")
	if v := os.Getenv("TRELLIS_CREDENTIAL_FD"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 3 {
			return fmt.Errorf("TRELLIS_CREDENTIAL_FD=%q: must be an inherited file descriptor number, 3 or more", v)
		}
		*credFD = n
	}
	credFile := fs.String("credential-file", env("TRELLIS_CREDENTIAL_FILE", ""), "a file holding the pod's credential for its first certificate, read again at each request (env TRELLIS_CREDENTIAL_FILE); --credential-fd is preferred")
	certTTL, err := envDuration("SECRET_TTL", certs.DefaultTTL)
	if err != nil {
		return err
	}
	fs.DurationVar(&certTTL, "cert-ttl", certTTL, "the workload certificate lifetime asked of the CA; renewed at half of it (env SECRET_TTL)")
	trustDomain := fs.String("trust-domain", env("TRUST_DOMAIN", "cluster.local"), "the mesh's trust domain, for the SPIFFE ID the proxy expects (env TRUST_DOMAIN)")
	concurrency := fs.Int("concurrency", defaultConcurrency, "threads running proxy code at once, as Istio's proxy concurrency; 0 means one per CPU (env PROXY_CONCURRENCY; GOMAXPROCS, when set, wins)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Read and closed first thing, whatever else fails: the token is in
	// this process's memory only from here on.
	var credential string
	if *credFD >= 0 {
		if *credFD < 3 {
			return fmt.Errorf("--credential-fd %d: must be an inherited descriptor, 3 or more (0-2 are stdin, stdout and stderr)", *credFD)
		}
		if *credFile != "" {
			return errors.New("--credential-fd and --credential-file (TRELLIS_CREDENTIAL_FD, TRELLIS_CREDENTIAL_FILE) are both set: give the credential one way")
		}
		tok, err := certs.ReadCredentialFD(uintptr(*credFD))
		if err != nil {
			return err
		}
		credential = tok
	}

	if *concurrency < 0 {
		return fmt.Errorf("--concurrency %d: must be >= 0", *concurrency)
	}
	// A sidecar's load rarely needs more than one thread, and Go's
	// scheduler on more threads than the work needs spins and wakes idle
	// ones: at 1,000 rps two threads cost about 35% more CPU and added
	// latency than one (docs/performance.md, "Sidecar").
	if _, set := os.LookupEnv("GOMAXPROCS"); !set && *concurrency > 0 {
		runtime.GOMAXPROCS(*concurrency)
	}

	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level %q: %w", *level, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})).With("pod", *podName)

	opts := sidecar.Options{
		XDS:            *xds,
		AdminSocket:    *adminSocket,
		DrainDuration:  *drain,
		MaxConnections: *maxConns,
		Log:            log,
		Node: xdsclient.Node{
			Pod: *podName, Namespace: *namespace, ServiceAccount: *sa, WorkloadName: *workload,
		},
	}
	// Options' zero is the default; the flag's is none.
	opts.MaxConnectionAge = cmp.Or(max(maxAge, 0), -1)
	switch strings.ToUpper(*mode) {
	case "NONE", "EXPLICIT":
		opts.Mode = sidecar.Explicit
	case "REDIRECT", "TRANSPARENT":
		opts.Mode = sidecar.Transparent
	default:
		return fmt.Errorf("--mode %q: must be NONE (explicit) or REDIRECT (transparent)", *mode)
	}
	if *podIP != "" {
		ip, err := netip.ParseAddr(*podIP)
		if err != nil {
			return fmt.Errorf("--pod-ip %q: %w", *podIP, err)
		}
		opts.PodIP = ip
	}
	if *dnsCapture {
		if opts.Mode == sidecar.Transparent {
			opts.DNS = sidecar.DNSCaptureAddrs()
		} else {
			// Only capture sends the app's DNS to the proxy.
			log.Warn("DNS capture needs REDIRECT mode; not serving DNS", "mode", opts.Mode.String())
		}
	}
	if opts.Mode == sidecar.Explicit && !opts.PodIP.IsValid() {
		return errors.New("explicit mode needs the pod IP: set POD_IP or --pod-ip")
	}
	if *labels != "" {
		opts.Node.Labels = map[string]string{}
		for kv := range strings.SplitSeq(*labels, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--labels: %q is not key=value", kv)
			}
			opts.Node.Labels[k] = v
		}
	}
	if v := os.Getenv(apphealth.EnvName); v != "" {
		// The pod's probes, rewritten to this proxy's status port.
		probers, err := apphealth.Parse(v)
		if err != nil {
			return err
		}
		opts.AppProbers = probers
	}
	if v := os.Getenv(sidecar.EnvPrometheusAnnotations); v != "" {
		am, err := sidecar.ParsePrometheusAnnotations(v)
		if err != nil {
			return err
		}
		opts.AppMetrics = am
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	start := time.Now()
	// certsFailed is why renewals stopped for good (a spent single-use
	// credential), nil otherwise; valid once the sidecar has stopped.
	certsFailed := func() error { return nil }
	if *rootCert != "" {
		id := fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", *trustDomain, *namespace, *sa)
		mgr, err := certs.NewManager(certs.ManagerOptions{
			CA: cmp.Or(*caAddr, *xds), RootCertFile: *rootCert, CredentialFile: *credFile,
			Credential: credential, TTL: certTTL, SPIFFEID: id, Log: log,
		})
		credential = ""
		if err != nil {
			return err
		}
		// Renewals run until the proxy returns, whatever the reason. When
		// they can no longer succeed (a spent single-use credential) the
		// proxy stops and exits with the reason, so its supervisor starts
		// it again with a new credential.
		certCtx, stopCerts := context.WithCancel(ctx)
		certsDone := make(chan struct{})
		var certsErr error
		go func() {
			defer close(certsDone)
			if certsErr = mgr.Run(certCtx); certsErr != nil {
				stop()
			}
		}()
		defer func() { stopCerts(); <-certsDone }()
		certsFailed = func() error {
			stopCerts()
			<-certsDone
			return certsErr
		}
		if !waitFirstCertificate(ctx, mgr, log) {
			return certsFailed() // nil: stopped while waiting
		}
		opts.Identity = mgr
		opts.XDSTLS = certs.ControlPlaneConfig(mgr)
	} else if credential != "" {
		log.Warn("a credential was given but no root certificate (--root-cert / XDS_ROOT_CA): not asking the CA for a certificate")
	}
	log.Info("starting", "mode", opts.Mode.String(), "pod_ip", opts.PodIP, "xds", opts.XDS, "xds_mtls", opts.XDSTLS != nil, "dns_capture", len(opts.DNS) > 0)
	if err := sidecar.New(opts).Run(ctx); err != nil {
		return err
	}
	if err := certsFailed(); err != nil {
		return err
	}
	log.Info("exited", "uptime", time.Since(start).Round(time.Millisecond))
	return nil
}
