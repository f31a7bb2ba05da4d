// Command meshcp is `trellis controlplane` for bench/sidecar.sh with one
// addition: it hands out per-pod credentials, as `trellis up` does for the
// pods it starts, so that separately started trellis-proxy processes can
// get certificates from the mesh CA.
//
//	go run ./bench/meshcp --config DIR --xds-address A --secure-xds-address B \
//	    --out DIR --identity default/ratings --identity default/sleep
//
// It starts the same control plane (controlplane.Start, with its CA in
// memory), then writes OUT/root-cert.pem (the trust bundle) and, for each
// --identity NS/SA, OUT/NS.SA.credential (0600): the token that gets
// certificates for spiffe://<trust domain>/ns/NS/sa/SA and nothing else.
// Give a proxy --root-cert OUT/root-cert.pem --credential-file
// OUT/NS.SA.credential --xds B --namespace NS --service-account SA.
// OUT/ready appears once everything is written. It runs until SIGTERM.
//
// `trellis controlplane` keeps credentials in memory and has no command to
// issue one (local mode issues them itself, per pod); a bench helper is the
// least invasive way to give standalone proxies an identity.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/trellismesh/trellis/internal/controlplane"
)

type identities []string

func (i *identities) String() string     { return strings.Join(*i, ",") }
func (i *identities) Set(v string) error { *i = append(*i, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "meshcp:", err)
		os.Exit(1)
	}
}

func run() error {
	config := flag.String("config", "", "folder of mesh config to watch")
	xdsAddr := flag.String("xds-address", "127.0.0.1:15010", "plaintext xDS listen address")
	secure := flag.String("secure-xds-address", "127.0.0.1:15012", "TLS listen address for xDS and the CA")
	out := flag.String("out", "", "folder to write root-cert.pem and the credentials to")
	var ids identities
	flag.Var(&ids, "identity", "NS/SA to issue a credential for (repeatable)")
	flag.Parse()
	if *config == "" || *out == "" {
		return errors.New("--config and --out are required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cp, err := controlplane.Start(ctx, controlplane.Options{
		ConfigPaths:      []string{*config},
		XDSAddress:       *xdsAddr,
		SecureXDSAddress: *secure,
		Log:              log,
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "root-cert.pem"), cp.RootCertPEM(), 0o600); err != nil {
		return err
	}
	for _, id := range ids {
		ns, sa, ok := strings.Cut(id, "/")
		if !ok || ns == "" || sa == "" {
			return fmt.Errorf("--identity %q: want NAMESPACE/SERVICEACCOUNT", id)
		}
		tok, err := cp.IssueCredential(ns, sa)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*out, ns+"."+sa+".credential"), []byte(tok), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(*out, "ready"), nil, 0o600); err != nil {
		return err
	}
	return cp.Wait()
}
