package sqlapps_test

import (
	"context"
	"database/sql"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/dbtest"
	"github.com/imcallback/callback/sqlapps"
)

// hangTimeout is the Stores' QueryTimeout in these tests; bound is the
// limit every call must return within once the database hangs: without
// the QueryTimeout a call waits for ever, so the bound is far above it, as
// a loaded machine needs.
const (
	hangTimeout = 300 * time.Millisecond
	bound       = 20 * time.Second
)

// hangingProxy is a TCP proxy to a database server that can freeze: from
// then on it forwards nothing either way on the connections it holds, and
// holds new ones silent. With no target it is frozen from the start: a
// database that accepts connections and never answers.
type hangingProxy struct {
	ln     net.Listener
	target string
	frozen chan struct{} // closed by Freeze
	freeze sync.Once
	done   chan struct{} // closed by close
	wg     sync.WaitGroup

	mu    sync.Mutex // guards conns
	conns []net.Conn
}

func newHangingProxy(t *testing.T, target string) *hangingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &hangingProxy{ln: ln, target: target, frozen: make(chan struct{}), done: make(chan struct{})}
	if target == "" {
		p.Freeze()
	}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *hangingProxy) Addr() string { return p.ln.Addr().String() }

// Freeze stops all traffic through the proxy.
func (p *hangingProxy) Freeze() { p.freeze.Do(func() { close(p.frozen) }) }

func (p *hangingProxy) isFrozen() bool {
	select {
	case <-p.frozen:
		return true
	default:
		return false
	}
}

// hold keeps c open until close, and reports whether the proxy still runs.
func (p *hangingProxy) hold(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		_ = c.Close()
		return false
	default:
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *hangingProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.hold(c) || p.isFrozen() {
			continue // held silent until close
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil || !p.hold(s) {
			_ = c.Close()
			continue
		}
		p.wg.Go(func() { p.pipe(s, c) })
		p.wg.Go(func() { p.pipe(c, s) })
	}
}

// pipe copies from src to dst until the proxy freezes: what it reads then
// is dropped, and it waits for close.
func (p *hangingProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.isFrozen() {
			<-p.done
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = dst.Close()
			return
		}
	}
}

func (p *hangingProxy) close() {
	p.mu.Lock()
	close(p.done)
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	p.wg.Wait()
}

// throughProxy returns dsn with its server's address replaced by addr.
func throughProxy(t *testing.T, b dbtest.Backend, dsn, addr string) (string, string) {
	t.Helper()
	if b.Dialect == sqlapps.MySQL {
		cfg, err := mysql.ParseDSN(dsn)
		require.NoError(t, err)
		server := cfg.Addr
		cfg.Addr = addr
		return cfg.FormatDSN(), server
	}
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	server := u.Host
	u.Host = addr
	return u.String(), server
}

// hangingDSN is a DSN of b's driver for a server at addr.
func hangingDSN(b dbtest.Backend, addr string) string {
	if b.Dialect == sqlapps.MySQL {
		return "imcallback:imcallback@tcp(" + addr + ")/imcallback"
	}
	return "postgres://imcallback:imcallback@" + addr + "/imcallback?sslmode=disable"
}

// within runs f and fails t if it takes longer than bound.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	if took := time.Since(start); took > bound {
		t.Errorf("%s took %v, want at most %v (QueryTimeout %v)", what, took, bound, hangTimeout)
	}
}

// A database that accepts connections and never answers, the store of a
// Dispatcher: a Before for an app it has not read fails open within the
// QueryTimeout (closed by a FailClosed rule), After returns the error, a
// caller's shorter deadline is kept, and nothing blocks past those bounds.
// The drivers need no server for this: the listener is the database.
func TestDatabaseHangs(t *testing.T) {
	for _, b := range dbtest.Servers {
		t.Run(b.Name, func(t *testing.T) {
			p := newHangingProxy(t, "")
			db := sql.OpenDB(b.Connector(t, hangingDSN(b, p.Addr())))
			t.Cleanup(func() { _ = db.Close() })
			s, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect, QueryTimeout: hangTimeout})
			require.NoError(t, err)
			d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler),
				Commands: map[string]callback.Rule{"guarded": {FailClosed: true}}})
			require.NoError(t, err)
			ctx := context.Background()

			within(t, "Migrate with a 200 ms deadline", func() {
				mctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				assert.ErrorIs(t, s.Migrate(mctx), context.DeadlineExceeded)
			})
			within(t, "Before", func() {
				r := d.Before(ctx, 1, "cmd", []byte(`{}`))
				assert.Equal(t, callback.Allow, r.Action, "fail open: got %v", r.Action)
				assert.ErrorIs(t, r.Err, callback.ErrResolve)
				assert.ErrorIs(t, r.Err, context.DeadlineExceeded)
			})
			within(t, "Before of a FailClosed command", func() {
				r := d.Before(ctx, 1, "guarded", []byte(`{}`))
				assert.Equal(t, callback.Deny, r.Action, "fail closed: got %v", r.Action)
				assert.ErrorIs(t, r.Err, callback.ErrResolve)
			})
			within(t, "After", func() {
				err := d.After(ctx, 1, "cmd", []byte(`{}`))
				assert.ErrorIs(t, err, callback.ErrResolve)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			})
			within(t, "16 concurrent Befores of 16 apps", func() {
				var wg sync.WaitGroup
				for app := range 16 {
					wg.Go(func() {
						r := d.Before(ctx, 100+app, "cmd", []byte(`{}`))
						assert.Equal(t, callback.Allow, r.Action, "app %d", 100+app)
					})
				}
				wg.Wait()
			})

			// A caller's deadline shorter than the QueryTimeout ends its wait.
			slow, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect, QueryTimeout: time.Minute})
			require.NoError(t, err)
			within(t, "Resolve with a 200 ms deadline", func() {
				rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				defer cancel()
				_, err := slow.Resolve(rctx, 1)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			})
			within(t, "Close", func() { assert.NoError(t, d.Close(ctx)) })
		})
	}
}

// A real server that hangs after the Store has read an app, by a proxy in
// front of it that freezes: Before and After for that app are unaffected,
// served from the cache; an app never read fails open within the
// QueryTimeout; once the cache entry expires, the stale endpoint is served
// within the QueryTimeout.
func TestDatabaseHangsAfterReads(t *testing.T) {
	for _, b := range dbtest.Servers {
		t.Run(b.Name, func(t *testing.T) {
			dsn, server := throughProxy(t, b, b.DSN(t), "")
			p := newHangingProxy(t, server)
			dsn, _ = throughProxy(t, b, dsn, p.Addr())
			db := sql.OpenDB(b.Connector(t, dsn))
			t.Cleanup(func() { _ = db.Close() })
			clk := &clock{now: time.Unix(1700000000, 0)}
			s, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect, TTL: time.Minute, QueryTimeout: hangTimeout})
			require.NoError(t, err)
			sqlapps.SetClock(s, clk.Now)
			ctx := context.Background()
			require.NoError(t, s.Migrate(ctx))
			backend := newApp(t, "")
			require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: backend.URL}}))
			d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			// Before the hang the app is read through two proxies within
			// the 300 ms QueryTimeout, which a loaded machine may miss:
			// it is tried until read (the Dispatcher keeps no failed
			// resolution).
			require.Eventually(t, func() bool {
				return d.Before(ctx, 1, "cmd", []byte(`{}`)).Err == nil
			}, 60*time.Second, 50*time.Millisecond, "before the hang: app 1 never read")

			p.Freeze()
			within(t, "Before of a cached app", func() {
				r := d.Before(ctx, 1, "cmd", []byte(`{}`))
				require.NoError(t, r.Err)
				assert.Equal(t, callback.Allow, r.Action)
			})
			assert.Equal(t, int64(2), backend.calls.Load(), "calls that reached the App backend")
			within(t, "After of a cached app", func() { require.NoError(t, d.After(ctx, 1, "cmd", []byte(`{}`))) })
			within(t, "Before of an app never read", func() {
				r := d.Before(ctx, 2, "cmd", []byte(`{}`))
				assert.Equal(t, callback.Allow, r.Action, "fail open: got %v", r.Action)
				assert.ErrorIs(t, r.Err, callback.ErrResolve)
			})
			within(t, "After of an app never read", func() {
				assert.ErrorIs(t, d.After(ctx, 2, "cmd", []byte(`{}`)), callback.ErrResolve)
			})
			clk.Add(2 * time.Minute)
			within(t, "Before of a cached app, expired", func() {
				r := d.Before(ctx, 1, "cmd", []byte(`{}`))
				require.NoError(t, r.Err, "the stale endpoint is served")
			})
			within(t, "Close", func() { assert.NoError(t, d.Close(ctx)) })
			assert.Equal(t, int64(4), backend.calls.Load(), "calls that reached the App backend, After's included")
		})
	}
}
