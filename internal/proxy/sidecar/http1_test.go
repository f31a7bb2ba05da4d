package sidecar_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellismesh/trellis/internal/testing/leak"
)

// http1App is the app for the HTTP/1.1 tests.
func http1App(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/lines":
		// Answers each line of the request body as it comes.
		http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("X-Seen-Te", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-Seen-Length", strconv.FormatInt(r.ContentLength, 10))
		w.WriteHeader(http.StatusOK)
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				fmt.Fprintf(w, "echo %s", line)
				http.NewResponseController(w).Flush()
			}
			if err != nil {
				return
			}
		}
	case "/echo":
		// Echoes the body (with its length when the request had one) and
		// says what it received in trailers.
		http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Trailer", "X-Sha256, X-Bytes")
		w.Header().Set("X-Seen-Expect", r.Header.Get("Expect"))
		if r.ContentLength >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
		}
		h := sha256.New()
		n, _ := io.Copy(io.MultiWriter(w, h), r.Body)
		w.Header().Set("X-Sha256", hex.EncodeToString(h.Sum(nil)))
		w.Header().Set("X-Bytes", strconv.FormatInt(n, 10))
	case "/trailers":
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "part one, ")
		http.NewResponseController(w).Flush()
		io.WriteString(w, "part two")
		w.Header().Set("X-Checksum", "c0ffee")
		w.Header().Set(http.TrailerPrefix+"X-Undeclared", "late")
	default:
		io.WriteString(w, "app")
	}
}

// rawApp is an HTTP/1.1 server written on bytes: it answers with the
// request head it received, byte for byte, under header names of its own
// odd case.
func rawApp(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close() // idle keep-alive connections of the app's sidecar
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					var head bytes.Buffer
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nx-lower-case: a\r\nX-UPPER-CASE: B\r\nX-MiXeD-cAsE: C\r\nx-custom-Case: D\r\nContent-Length: %d\r\n\r\n%s", head.Len(), head.Bytes())
				}
			})
		}
	})
}

// HTTP/1.1 through two proxies, on the wire: bodies streamed chunk by
// chunk both ways, 100-continue, 8 MB bodies intact both ways with and
// without a length, trailers on a chunked response, and what becomes of
// header case.
func TestHTTP1ThroughTwoProxies(t *testing.T) {
	leak.Check(t)
	am := newAppMesh(t, "127.77.13", "", http1App)
	rawApp(t, "127.77.13.2:8081")
	c := am.client.Client()
	defer c.CloseIdleConnections()

	t.Run("ChunkedStreamedBothWays", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		req, _ := http.NewRequest(http.MethodPost, "http://app:8080/lines", pr)
		type result struct {
			resp *http.Response
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := c.Do(req)
			done <- result{resp, err}
		}()
		// Lock-step: each answer comes back before the next line goes, so
		// neither direction may wait for the whole body.
		io.WriteString(pw, "line 0\n")
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		defer res.resp.Body.Close()
		if got := res.resp.Header.Get("X-Seen-Te"); got != "chunked" {
			t.Errorf("the app got Transfer-Encoding %q, want chunked (length %s)", got, res.resp.Header.Get("X-Seen-Length"))
		}
		if got := res.resp.TransferEncoding; len(got) != 1 || got[0] != "chunked" {
			t.Errorf("the client got Transfer-Encoding %q, want chunked", got)
		}
		br := bufio.NewReader(res.resp.Body)
		for i := range 10 {
			if i > 0 {
				fmt.Fprintf(pw, "line %d\n", i)
			}
			line, err := br.ReadString('\n')
			if want := fmt.Sprintf("echo line %d\n", i); line != want {
				t.Fatalf("got %q, %v; want %q", line, err, want)
			}
		}
		pw.Close()
		if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
			t.Errorf("after the request's end: %q, %v; want EOF", rest, err)
		}
	})

	t.Run("ExpectContinue", func(t *testing.T) {
		conn := dialProxy(t, am.client)
		body := "hello after 100"
		fmt.Fprintf(conn, "POST http://app:8080/echo HTTP/1.1\r\nHost: app:8080\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
		br := bufio.NewReader(conn)
		// The body is not sent until the 100 comes.
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("first answer %s, want 100 Continue", resp.Status)
		}
		io.WriteString(conn, body)
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(got) != body || err != nil {
			t.Errorf("final answer %s %q %v, want 200 echoing the body", resp.Status, got, err)
		}
		t.Logf("Expect at the app: %q", resp.Header.Get("X-Seen-Expect"))
	})

	t.Run("LargeBodies", func(t *testing.T) {
		payload := make([]byte, 8<<20)
		rand.Read(payload)
		sum := sha256.Sum256(payload)
		want := hex.EncodeToString(sum[:])
		for _, chunked := range []bool{false, true} {
			var body io.Reader = bytes.NewReader(payload)
			if chunked {
				body = io.MultiReader(body) // hides the length
			}
			req, _ := http.NewRequest(http.MethodPost, "http://app:8080/echo", body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("chunked %v: response body: %v", chunked, err)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want || n != int64(len(payload)) {
				t.Errorf("chunked %v: the client got %d bytes, sha256 %s; want %d, %s", chunked, n, got, len(payload), want)
			}
			// With a length the response cannot carry trailers; its echo
			// alone shows both directions intact.
			if got := resp.Trailer.Get("X-Sha256"); chunked && got != want {
				t.Errorf("chunked %v: the app got sha256 %s (%s bytes), want %s", chunked, got, resp.Trailer.Get("X-Bytes"), want)
			}
			if wantLen := map[bool]int64{false: int64(len(payload)), true: -1}[chunked]; resp.ContentLength != wantLen {
				t.Errorf("chunked %v: response length %d, want %d", chunked, resp.ContentLength, wantLen)
			}
		}
	})

	t.Run("ResponseTrailers", func(t *testing.T) {
		conn := dialProxy(t, am.client)
		io.WriteString(conn, "GET http://app:8080/trailers HTTP/1.1\r\nHost: app:8080\r\nTE: trailers\r\nConnection: close\r\n\r\n")
		wire, err := io.ReadAll(conn)
		if err != nil {
			t.Fatal(err)
		}
		head, body, _ := bytes.Cut(wire, []byte("\r\n\r\n"))
		if !bytes.Contains(bytes.ToLower(head), []byte("\r\ntransfer-encoding: chunked")) {
			t.Fatalf("response not chunked:\n%s", head)
		}
		// After the last chunk: the trailer fields, then the empty line.
		i := bytes.Index(body, []byte("\r\n0\r\n"))
		if i < 0 {
			t.Fatalf("no last chunk in %q", body)
		}
		trailer := string(body[i+len("\r\n0\r\n"):])
		for _, f := range []string{"X-Checksum: c0ffee\r\n", "X-Undeclared: late\r\n"} {
			if !strings.Contains(trailer, f) {
				t.Errorf("trailer section %q lacks %q", trailer, f)
			}
		}
		if !strings.HasSuffix(trailer, "\r\n\r\n") {
			t.Errorf("trailer section %q does not end the message", trailer)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(wire)), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "part one, part two" || resp.Trailer.Get("X-Checksum") != "c0ffee" {
			t.Errorf("parsed: %q, trailer %v", b, resp.Trailer)
		}
	})

	t.Run("HeaderCase", func(t *testing.T) {
		// Header names keep their spelling on HTTP/1.1 through both
		// proxies, both ways (Envoy's preserve_case): net/http
		// canonicalises names when parsing, the proxies remember the
		// spelling from the raw bytes. Values and the order of repeated
		// fields are kept; a name in two spellings takes its first
		// non-canonical one.
		conn := dialProxy(t, am.client)
		io.WriteString(conn, "GET http://app:8081/case HTTP/1.1\r\nHost: app:8081\r\nx-lower: 1\r\nX-MiXeD-CaSe: 2\r\nSOAPAction: 3\r\nX-Multi: a\r\nx-multi: b\r\nX-Canonical: 4\r\nConnection: close\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		wire, err := io.ReadAll(conn)
		if err != nil {
			t.Fatal(err)
		}
		head, seen, _ := strings.Cut(string(wire), "\r\n\r\n")
		var names []string
		for line := range strings.SplitSeq(seen, "\r\n") {
			if name, value, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(strings.ToLower(name), "x-") || strings.EqualFold(name, "soapaction") {
				names = append(names, name+"="+strings.TrimSpace(value))
			}
		}
		// On the app's wire, exactly as the client spelled them.
		for _, want := range []string{"x-lower=1", "X-MiXeD-CaSe=2", "SOAPAction=3", "x-multi=a", "x-multi=b", "X-Canonical=4"} {
			if !slices.Contains(names, want) {
				t.Errorf("the app did not get %s (saw %v)", want, names)
			}
		}
		if i, j := slices.Index(names, "x-multi=a"), slices.Index(names, "x-multi=b"); i > j {
			t.Errorf("repeated fields reordered: %v", names)
		}
		// On the client's socket, as the app spelled them.
		for _, want := range []string{"\r\nx-lower-case: a\r\n", "\r\nX-UPPER-CASE: B\r\n", "\r\nX-MiXeD-cAsE: C\r\n", "\r\nx-custom-Case: D\r\n"} {
			if !strings.Contains(head+"\r\n", want) {
				t.Errorf("the client's response head lacks %q (was httptrace's GotConn told the upstream connection? see upstream.ResponseHeaderNames):\n%s", strings.TrimSpace(want), head)
			}
		}
	})
}
