package inspector_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
	"github.com/imcallback/callback/natsqueue"
)

// longWait bounds every wait of a test on a busy machine.
const longWait = 20 * time.Second

var quiet = slog.New(slog.DiscardHandler)

// app is a real App backend: answer decides each request's status by its
// webhook-id and how many requests with it came before.
type app struct {
	*httptest.Server
	mu     sync.Mutex
	byID   map[string]int
	answer func(id string, seen int) int
}

func newApp(t *testing.T, answer func(id string, seen int) int) *app {
	t.Helper()
	a := &app{byID: map[string]int{}, answer: answer}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Webhook-Id")
		a.mu.Lock()
		seen := a.byID[id]
		a.byID[id]++
		a.mu.Unlock()
		w.WriteHeader(a.answer(id, seen))
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
	}))
	t.Cleanup(a.Close)
	return a
}

// requests returns how many requests carried id.
func (a *app) requests(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byID[id]
}

func always(status int) func(string, int) int { return func(string, int) int { return status } }

// newDispatcher returns a Dispatcher closed at the end of the test, at
// once: what is left is dead-lettered.
func newDispatcher(t *testing.T, cfg callback.Config) *callback.Dispatcher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	d, err := callback.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), longWait)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

// serve mounts the inspector of d under /debug/callbacks/, as the package
// doc says, and returns the inspector's base URL.
func serve(t *testing.T, d *callback.Dispatcher, o inspector.Options) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/debug/callbacks/", http.StripPrefix("/debug/callbacks", inspector.New(d, o)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/debug/callbacks/"
}

// get fetches u and returns its status and body.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// getJSON fetches u, requires a 200 with JSON, and decodes it into v.
func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	res, err := http.Get(u)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "GET %s", u)
	require.Contains(t, res.Header.Get("Content-Type"), "application/json")
	require.NoError(t, json.NewDecoder(res.Body).Decode(v))
}

// post sends a form POST to u, without following a redirect.
func post(t *testing.T, u string, form url.Values, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// event fetches the story of id from the JSON API.
func event(t *testing.T, base, id string) inspector.EventResponse {
	t.Helper()
	var ev inspector.EventResponse
	getJSON(t, base+"api/event?id="+url.QueryEscape(id), &ev)
	return ev
}

// outcomes returns "outcome#attempt:status" of each record.
func outcomes(as []callback.Attempt) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, string(a.Outcome)+"#"+itoa(a.Attempt)+":"+itoa(a.Status))
	}
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

// page is a parsed HTML page.
type page struct{ root *html.Node }

// getPage fetches and parses the page at u, requiring a 200 HTML answer
// that the parser takes without any script element.
func getPage(t *testing.T, u string) page {
	t.Helper()
	res, err := http.Get(u)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
	root, err := html.Parse(res.Body)
	require.NoError(t, err)
	p := page{root}
	require.Empty(t, p.all("script"), "the page runs no script")
	return p
}

// all returns the elements named tag.
func (p page) all(tag string) []*html.Node {
	var out []*html.Node
	for n := range p.root.Descendants() {
		if n.Type == html.ElementNode && n.Data == tag {
			out = append(out, n)
		}
	}
	return out
}

// byID returns the element with that id, or nil.
func (p page) byID(id string) *html.Node {
	for n := range p.root.Descendants() {
		if n.Type == html.ElementNode && attr(n, "id") == id {
			return n
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// text returns the text inside n.
func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	for c := range n.Descendants() {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	return b.String()
}

// items returns the li children of the list with that id.
func (p page) items(t *testing.T, id string) []*html.Node {
	t.Helper()
	list := p.byID(id)
	require.NotNil(t, list, "no element #%s", id)
	var out []*html.Node
	for c := range list.ChildNodes() {
		if c.Type == html.ElementNode && c.Data == "li" {
			out = append(out, c)
		}
	}
	return out
}

// startNATS starts an embedded JetStream server in a temporary directory,
// shut down at the end of the test, and returns a connection to it.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	require.True(t, srv.ReadyForConnections(10*time.Second))
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// newQueue returns a natsqueue Queue on nc; the Dispatcher given it
// closes it.
func newQueue(t *testing.T, nc *nats.Conn) *natsqueue.Queue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), longWait)
	defer cancel()
	q, err := natsqueue.New(ctx, nc, natsqueue.Options{})
	require.NoError(t, err)
	return q
}

// waitFor polls cond until it holds, within longWait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for !cond() {
		if time.Now().After(deadline) {
			require.FailNow(t, "timed out waiting for "+what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// atomicBool is a flag the App backends read.
type atomicBool struct{ v atomic.Bool }

func (b *atomicBool) get() bool  { return b.v.Load() }
func (b *atomicBool) set(v bool) { b.v.Store(v) }

// headerTransport adds headers to every request.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// sortByTime orders records by time: an After's acceptance may be
// numbered after its first attempt.
func sortByTime(as []callback.Attempt) []callback.Attempt {
	slices.SortStableFunc(as, func(a, b callback.Attempt) int { return a.Time.Compare(b.Time) })
	return as
}
