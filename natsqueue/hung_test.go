package natsqueue_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// freezer is a TCP proxy to a NATS server that can hang: frozen, it keeps
// its connections open and forwards nothing, as a server stopped with
// SIGSTOP does.
type freezer struct {
	ln       net.Listener
	upstream string

	mu     sync.Mutex // guards frozen, thaw, conns and closed
	frozen bool
	thaw   chan struct{} // closed when the proxy is thawed or closed
	conns  []net.Conn
	closed bool

	wg sync.WaitGroup // the accept loop and the copies
}

func newFreezer(t *testing.T, upstream string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &freezer{ln: ln, upstream: upstream, thaw: make(chan struct{})}
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *freezer) url() string { return "nats://" + f.ln.Addr().String() }

func (f *freezer) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", f.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			_ = c.Close()
			_ = u.Close()
			return
		}
		f.conns = append(f.conns, c, u)
		f.wg.Add(2)
		f.mu.Unlock()
		go f.copy(u, c)
		go f.copy(c, u)
	}
}

// copy forwards from src to dst, holding what it read while frozen.
func (f *freezer) copy(dst, src net.Conn) {
	defer f.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.mu.Lock()
			frozen, thaw := f.frozen, f.thaw
			f.mu.Unlock()
			if frozen {
				<-thaw
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				_ = src.Close()
			}
			return
		}
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
}

func (f *freezer) close() {
	f.mu.Lock()
	f.closed = true
	if f.frozen {
		f.frozen = false
		close(f.thaw)
	}
	conns := f.conns
	f.mu.Unlock()
	_ = f.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	f.wg.Wait()
}

// TestHungServer: a node whose server hangs (TCP open, nothing answered)
// moves to another server after a few missed heartbeats, not after
// nats.go's 2-minute pings, and delivers again.
func TestHungServer(t *testing.T) {
	srv := startServer(t, t.TempDir())
	hung := newFreezer(t, srv.Addr().String())
	a := newApp(t, nil)
	nc := connect(t, hung.url()+","+srv.ClientURL(), nats.DontRandomize(), nats.ReconnectWait(50*time.Millisecond))
	n := newNode(t, nc, natsqueue.Options{Heartbeat: 500 * time.Millisecond, Logger: quiet}, callback.Config{URL: a.URL, RetrySchedule: short})
	ctx := context.Background()
	require.NoError(t, n.d.After(ctx, 1, "msg", body(0)))
	a.waitDelivered(t, 1, 30*time.Second)

	hung.freeze()
	waitFor(t, "the node to leave the hung server", func() bool {
		return nc.IsConnected() && nc.ConnectedUrl() == srv.ClientURL()
	})
	for i := 1; i <= 10; i++ {
		require.NoError(t, n.d.After(ctx, 1, "msg", body(i)))
	}
	a.waitDelivered(t, 11, 30*time.Second)
}
