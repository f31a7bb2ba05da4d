package admin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Server timeouts. The write timeout is long because pprof refuses a
// profile or trace longer than it, and a 60 s CPU profile is routine; the
// header timeout is what actually stops a slow client holding a
// connection.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// shutdownTimeout bounds the graceful part of a stop; a profile still
	// running after it is cut off, since the proxy is exiting anyway.
	shutdownTimeout = 5 * time.Second
)

type unixKey struct{}

// Serve serves h on l until ctx is done, then shuts down gracefully and
// returns nil once every connection is closed. It returns early with the
// error if serving fails. l is closed either way.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// A Unix socket's peer has no address to check, so the
		// listener's type is what marks a request as local; see isLocal.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if _, ok := c.LocalAddr().(*net.UnixAddr); ok {
				return context.WithValue(ctx, unixKey{}, true)
			}
			return ctx
		},
		// Requests keep ctx's values but not its cancellation, so a stop
		// lets in-flight requests finish instead of failing them at once.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	stopped := make(chan struct{})
	serveDone := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-serveDone:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()

	err := srv.Serve(l)
	close(serveDone)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	srv.Close()
	return err
}

func overUnix(ctx context.Context) bool {
	v, _ := ctx.Value(unixKey{}).(bool)
	return v
}
