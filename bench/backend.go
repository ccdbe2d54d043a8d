package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// backend is a loopback App backend that reads each request and allows
// it. It runs in this process or, with -backend-proc, in a child process
// (this binary in its hidden -serve mode), so that the client's CPU can be
// told from the server's. tls is the client configuration that trusts it
// (nil for plain HTTP).
type backend struct {
	URL  string
	tls  *tls.Config
	pid  int // the backend process, 0 in this process
	stat func() (conns, received int64)
	cpu  func() time.Duration // the backend process's CPU time so far; nil in this process
	stop func()
	// spin keeps the backend process busy (on) or lets it rest: the
	// test of settle's failure. nil in this process.
	spin func(on bool)
}

// conns is how many TCP connections the backend has accepted so far.
func (b *backend) conns() int64 { c, _ := b.stat(); return c }

// received is how many requests the backend has read so far.
func (b *backend) received() int64 { _, r := b.stat(); return r }

// settle waits until the backend process is close to idle (under a
// twentieth of a core over the last 100 ms), so that a round does not pay
// for the work a previous round left behind: a client that gave up on its
// calls leaves the backend finishing handshakes and requests. It returns
// an error when the backend is still busy after settleFor: the round
// would measure the leftovers, and the bench must not print it as a
// result. The window is 100 ms, not one 20 ms tick, because on a loaded
// machine a busy process can get next to no CPU for a tick and look idle.
// It does nothing for a backend in this process, whose CPU is the bench's.
func (b *backend) settle() error {
	if b.cpu == nil {
		return nil
	}
	const (
		tick   = 20 * time.Millisecond
		window = 5 // ticks
	)
	deadline := time.Now().Add(settleFor)
	seen := []time.Duration{b.cpu()} // the last window+1 readings
	busy := time.Duration(0)
	for time.Now().Before(deadline) {
		time.Sleep(tick)
		seen = append(seen, b.cpu())
		if len(seen) <= window {
			continue
		}
		seen = seen[len(seen)-window-1:]
		if busy = seen[window] - seen[0]; busy < window*tick/20 {
			return nil
		}
	}
	return fmt.Errorf("the backend process (pid %d) was not idle before it: still busy after %v (%v of CPU in its last %v)", b.pid, settleFor, busy.Round(time.Millisecond), window*tick)
}

// settleFor is how long settle waits for the backend process to go idle.
const settleFor = 5 * time.Second

// Close stops the backend (and ends its process).
func (b *backend) Close() { b.stop() }

// server is the App backend's HTTP server with its counters.
type server struct {
	*httptest.Server
	conns, received atomic.Int64
}

// newServer starts a server of kind http (plain HTTP/1.1), tls (HTTPS,
// HTTP/1.1 only) or h2 (HTTPS offering HTTP/2).
func newServer(kind string) *server {
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.received.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, answer)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	// Handshakes a client gives up on (a cold start at concurrency 1024)
	// are counted as failed calls, not logged one by one.
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	switch kind {
	case "http":
		s.Start()
	case "tls", "h2":
		s.EnableHTTP2 = kind == "h2"
		s.StartTLS()
	default:
		log.Fatalf("unknown backend %q (want http, tls or h2)", kind)
	}
	return s
}

// trust returns a client TLS configuration that trusts the certificate
// with DER bytes der; nil for none.
func trust(der []byte) *tls.Config {
	if der == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool}
}

// newBackend starts a backend of kind, in a child process if proc.
func newBackend(kind string, proc bool) *backend {
	if proc {
		return startProc(kind)
	}
	s := newServer(kind)
	b := &backend{URL: s.URL, stop: s.Close}
	b.stat = func() (int64, int64) { return s.conns.Load(), s.received.Load() }
	if kind != "http" {
		b.tls = trust(s.Certificate().Raw)
	}
	return b
}

// serve is the child's side of -backend-proc: it starts a server of kind,
// prints its URL and certificate (base64 DER, or "-") on one line, then
// answers each line on stdin with "conns received cpu-ns" ("spin" and
// "rest" start and end a busy loop first, for a test). It ends when
// stdin closes, that is when the parent ends, whichever way.
func serve(kind string) {
	if kind == kindNATS {
		serveNATS()
		return
	}
	s := newServer(kind)
	defer s.Close()
	cert := "-"
	if c := s.Certificate(); c != nil && kind != "http" {
		cert = base64.StdEncoding.EncodeToString(c.Raw)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, s.URL, cert)
	_ = out.Flush()
	in := bufio.NewScanner(os.Stdin)
	var spin chan struct{} // closed to end the spinners of a "spin" line
	for in.Scan() {
		switch in.Text() {
		case "spin": // keep busy, for the test of settle
			if spin == nil {
				spin = make(chan struct{})
				for range runtime.GOMAXPROCS(0) {
					go spinUntil(spin)
				}
			}
		case "rest":
			if spin != nil {
				close(spin)
				spin = nil
			}
		}
		fmt.Fprintln(out, s.conns.Load(), s.received.Load(), int64(cpuTime()))
		_ = out.Flush()
	}
}

// spinUntil burns CPU until stop is closed.
func spinUntil(stop <-chan struct{}) {
	for n := 0; ; n++ {
		if n%1024 == 0 && closed(stop) {
			return
		}
	}
}

// closed reports whether c is closed.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// startProc starts this binary with -serve kind as a child process and
// returns the backend it serves. The child is in its own process group
// (Ctrl-C reaches only the bench, which then ends it), is killed with its
// group when the backend is closed, gets SIGKILL if the bench dies first
// (Pdeathsig, Linux) and ends by itself when its stdin closes.
func startProc(kind string) *backend {
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, exe, "-serve", kind)
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		log.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	in := bufio.NewScanner(stdout)
	if !in.Scan() {
		cancel()
		_ = cmd.Wait()
		log.Fatalf("backend process (%s) printed no address", kind)
	}
	url, cert, _ := strings.Cut(in.Text(), " ")
	b := &backend{URL: url, pid: cmd.Process.Pid}
	if cert != "-" {
		der, err := base64.StdEncoding.DecodeString(cert)
		if err != nil {
			log.Fatal(err)
		}
		b.tls = trust(der)
	}
	var mu sync.Mutex // serialises the exchanges
	ask := func(line string) (conns, received, cpu int64) {
		mu.Lock()
		defer mu.Unlock()
		if _, err := io.WriteString(stdin, line+"\n"); err != nil || !in.Scan() {
			log.Fatalf("backend process (%s) is gone: %v", kind, err)
		}
		if _, err := fmt.Sscan(in.Text(), &conns, &received, &cpu); err != nil {
			log.Fatalf("backend process (%s): %v", kind, err)
		}
		return conns, received, cpu
	}
	b.stat = func() (int64, int64) { c, r, _ := ask("stats"); return c, r }
	b.cpu = func() time.Duration { _, _, c := ask("stats"); return time.Duration(c) }
	b.spin = func(on bool) { ask(tern(on, "spin", "rest")) }
	b.stop = func() {
		_ = stdin.Close()
		cancel()
		_ = cmd.Wait()
	}
	return b
}
