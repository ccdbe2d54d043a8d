package receiver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/receiver"
)

// A request that declares 1 MiB and sends two bytes must not cost 1 MiB.
func TestBodyBufferGrowsAsBytesArrive(t *testing.T) {
	h := newHandler(t, receiver.Config{MaxBodyBytes: 2 << 20})
	serveDeclared := func() int {
		r := httptest.NewRequest("POST", "/callback?appId=1&command=c", strings.NewReader(`{}`))
		r.ContentLength = 1 << 20 // declared, never sent
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	require.Equal(t, http.StatusOK, serveDeclared())
	const runs = 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		serveDeclared()
	}
	runtime.ReadMemStats(&after)
	perRequest := (after.TotalAlloc - before.TotalAlloc) / runs
	assert.Less(t, perRequest, uint64(256<<10), "allocated %d bytes per request declaring 1 MiB", perRequest)
}

// A body trickled a byte at a time is cut off at ReadTimeout with a 408,
// instead of holding the handler for as long as the peer likes.
// startBody sends s the header of a callback whose body is 1000 bytes
// long and only its first byte, and returns the connection, closed when
// the test ends.
func startBody(t *testing.T, s *httptest.Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = fmt.Fprintf(conn, "POST /callback?appId=1&command=c HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	require.NoError(t, err)
	return conn
}

func TestReadTimeoutBoundsATrickledBody(t *testing.T) {
	h := newHandler(t, receiver.Config{ReadTimeout: 300 * time.Millisecond})
	conn := startBody(t, serve(t, h))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // one byte per 50 ms: the whole body would take 50 s
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "no answer: the trickled body holds the handler")
	defer res.Body.Close()
	assert.Equal(t, http.StatusRequestTimeout, res.StatusCode)
	assert.Less(t, time.Since(start), 20*time.Second, "ReadTimeout is 300 ms; the trickle would hold the handler until stopped")
}

func TestReadTimeoutConfig(t *testing.T) {
	_, err := receiver.New(receiver.Config{ReadTimeout: -1})
	require.NoError(t, err, "negative: no bound of the Handler's own")
	// A body that arrives in time is read whole, however long the
	// handler then takes; the next request on the connection is served.
	h := newHandler(t, receiver.Config{ReadTimeout: 100 * time.Millisecond})
	h.Handle("slow", func(ctx context.Context, _ *receiver.Request) (receiver.Decision, error) {
		select {
		case <-time.After(300 * time.Millisecond):
			return receiver.Allow(), ctx.Err()
		case <-ctx.Done():
			return receiver.Decision{}, ctx.Err()
		}
	})
	s := serve(t, h)
	for range 2 {
		status, body := post(t, "POST", s.URL+"?appId=1&command=slow", nil, []byte(`{}`))
		assert.Equal(t, http.StatusOK, status, body)
	}
}

// gate is a handler that blocks until released, counting its calls and
// failing the first failFirst of them.
type gate struct {
	calls     atomic.Int64
	entered   chan struct{}
	release   chan struct{}
	failFirst int64
}

func newGate(failFirst int64) *gate {
	return &gate{entered: make(chan struct{}, 10), release: make(chan struct{}), failFirst: failFirst}
}

func (g *gate) handle(ctx context.Context, _ *receiver.Request) (receiver.Decision, error) {
	n := g.calls.Add(1)
	g.entered <- struct{}{}
	select {
	case <-g.release:
	case <-ctx.Done():
		return receiver.Decision{}, ctx.Err()
	}
	if n <= g.failFirst {
		return receiver.Decision{}, errors.New("handler down")
	}
	return receiver.Deny(int(100+n), "answer"), nil
}

// The webhook-id is claimed before the handler runs: a replay under
// another command is refused while the first is being handled and after
// its handler failed, and the sender's plain retry still succeeds.
func TestDedupReservesTheIDBeforeHandling(t *testing.T) {
	t.Run("while the first is being handled", func(t *testing.T) {
		var others atomic.Int64
		g := newGate(0)
		h := newHandler(t, receiver.Config{Secret: secretNew, Dedup: 10})
		h.Handle("c", g.handle)
		h.Handle("other", func(context.Context, *receiver.Request) (receiver.Decision, error) {
			others.Add(1)
			return receiver.Allow(), nil
		})
		s := serve(t, h)
		hdr := signed(t, secretNew, "msg_1", time.Now(), []byte(`{}`))

		var wg sync.WaitGroup
		answers := make([]string, 2)
		for i := range 2 { // the first attempt, then a retry while it is handled
			if i == 1 {
				<-g.entered
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, body := post(t, "POST", s.URL+"?appId=1&command=c", hdr, []byte(`{}`))
				answers[i] = fmt.Sprint(status, " ", body)
			}()
		}
		status, body := post(t, "POST", s.URL+"?appId=1&command=other", hdr, []byte(`{}`))
		assert.Equal(t, http.StatusConflict, status, "a replay under another command while the first is handled: %s", body)
		assert.Equal(t, int64(0), others.Load(), "the replay must not reach the other handler")

		close(g.release)
		wg.Wait()
		assert.Equal(t, answers[0], answers[1], "the retry gets the first answer")
		assert.Contains(t, answers[0], `"code":101`)
		assert.Equal(t, int64(1), g.calls.Load(), "the retry waited instead of calling the handler again")
	})

	t.Run("after the handler failed", func(t *testing.T) {
		var others atomic.Int64
		g := newGate(1)
		close(g.release)
		h := newHandler(t, receiver.Config{Secret: secretNew, Dedup: 10})
		h.Handle("c", g.handle)
		h.Handle("other", func(context.Context, *receiver.Request) (receiver.Decision, error) {
			others.Add(1)
			return receiver.Allow(), nil
		})
		s := serve(t, h)
		body := []byte(`{}`)
		status, _ := post(t, "POST", s.URL+"?appId=1&command=c", signed(t, secretNew, "msg_2", time.Now(), body), body)
		require.Equal(t, http.StatusInternalServerError, status)

		status, answer := post(t, "POST", s.URL+"?appId=1&command=other", signed(t, secretNew, "msg_2", time.Now(), body), body)
		assert.Equal(t, http.StatusConflict, status, "a replay under another command after a 500: %s", answer)
		status, answer = post(t, "POST", s.URL+"?appId=9&command=c", signed(t, secretNew, "msg_2", time.Now(), body), body)
		assert.Equal(t, http.StatusConflict, status, "a replay under another app after a 500: %s", answer)
		assert.Equal(t, int64(0), others.Load())

		// The sender's retry (a fresh timestamp and signature, same ID)
		// calls the handler again and succeeds; a later repeat gets that
		// answer.
		status, answer = post(t, "POST", s.URL+"?appId=1&command=c", signed(t, secretNew, "msg_2", time.Now(), body), body)
		assert.Equal(t, http.StatusOK, status, answer)
		assert.Contains(t, answer, `"code":102`)
		status, again := post(t, "POST", s.URL+"?appId=1&command=c", signed(t, secretNew, "msg_2", time.Now(), body), body)
		assert.Equal(t, http.StatusOK, status)
		assert.Equal(t, answer, again)
		assert.Equal(t, int64(2), g.calls.Load())
	})
}

// Svix's SDKs send svix-id, svix-timestamp and svix-signature: the same
// values under other names.
func TestSvixHeaderNames(t *testing.T) {
	var got atomic.Value
	h := newHandler(t, receiver.Config{Secret: secretNew, Dedup: 10})
	h.Handle("c", func(_ context.Context, r *receiver.Request) (receiver.Decision, error) {
		got.Store(r.ID)
		return receiver.Allow(), nil
	})
	s := serve(t, h)
	body := []byte(`{"n":1}`)
	svix := func(hdr http.Header) http.Header {
		out := http.Header{}
		for k, v := range hdr {
			out["Svix"+strings.TrimPrefix(k, "Webhook")] = v
		}
		return out
	}
	status, answer := post(t, "POST", s.URL+"?appId=1&command=c", svix(signed(t, secretNew, "msg_svix", time.Now(), body)), body)
	require.Equal(t, http.StatusOK, status, answer)
	assert.Equal(t, "msg_svix", got.Load())

	status, _ = post(t, "POST", s.URL+"?appId=1&command=c", svix(signed(t, secretNew, "msg_svix2", time.Now(), body)), []byte(`{"n":2}`))
	assert.Equal(t, http.StatusUnauthorized, status, "a tampered body fails under the Svix names too")
	status, _ = post(t, "POST", s.URL+"?appId=1&command=c", svix(signed(t, secretOld, "msg_svix3", time.Now(), body)), body)
	assert.Equal(t, http.StatusUnauthorized, status, "another key fails")
}

func TestReceiverBodyMustBeUTF8(t *testing.T) {
	var calls atomic.Int64
	h := newHandler(t, receiver.Config{Secret: secretNew})
	h.Handle("c", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		calls.Add(1)
		return receiver.Allow(), nil
	})
	s := serve(t, h)
	body := []byte("{\"text\":\"\xff\xfe\"}")
	status, answer := post(t, "POST", s.URL+"?appId=1&command=c", signed(t, secretNew, "m", time.Now(), body), body)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, answer, "UTF-8")
	assert.Equal(t, int64(0), calls.Load())
}

// The Handler never writes an answer the Dispatcher would refuse as
// ambiguous: a Tencent rewrite may not set the envelope's keys, in any
// case, nor repeat a key.
func TestTencentRewriteIsUnambiguous(t *testing.T) {
	for _, data := range []string{`{"errorcode":5}`, `{"ErrorCode":5}`, `{"actionstatus":"FAIL"}`, `{"MsgBody":[],"msgbody":[{}]}`, `{"MsgBody":[],"MsgBody":[{}]}`} {
		h := newHandler(t, receiver.Config{Protocol: callback.Tencent})
		h.Handle("c", func(context.Context, *receiver.Request) (receiver.Decision, error) {
			return receiver.Rewrite(json.RawMessage(data)), nil
		})
		s := serve(t, h)
		status, answer := post(t, "POST", s.URL+"?SdkAppid=1&CallbackCommand=c", nil, []byte(`{}`))
		assert.Equal(t, http.StatusInternalServerError, status, "Rewrite(%s) answered %s", data, answer)
	}
}
