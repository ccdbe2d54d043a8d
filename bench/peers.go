package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/imcallback/callback"
)

// event is a message-send event, as an IM server would hold it. The
// OpenIM-style peer marshals one per call; eventBody gives the others the
// same bytes.
type event struct {
	FromID string `json:"fromId"`
	ToID   string `json:"toId"`
	MsgID  string `json:"msgId"`
	Text   string `json:"text"`
	TS     int64  `json:"ts"`
}

// newEvent returns the event whose JSON is size bytes (at least its
// fields' length), its text a repeated sentence.
func newEvent(size int) event {
	ev := event{FromID: "alice", ToID: "bob", MsgID: "m-000001", TS: 1700000000000}
	empty, _ := json.Marshal(ev)
	n := max(0, size-len(empty))
	ev.Text = strings.Repeat("hello, how are you today? ", n/26+1)[:n]
	return ev
}

// eventBody is the JSON of newEvent(size).
func eventBody(size int) []byte {
	b, err := json.Marshal(newEvent(size))
	if err != nil {
		log.Fatal(err)
	}
	return b
}

// Headers the library sends, so every client's requests are the same bytes
// on the wire (the webhook-id has the library's length).
const (
	userAgent = "imcallback/1 (+https://github.com/imcallback/callback)"
	webhookID = "msg_ABCDEFGHIJKLMNOP_1abc"
)

// setHeaders sets the library's headers on h.
func setHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", userAgent)
	h.Set("Webhook-Id", webhookID)
}

// client is one side of a Before comparison: a call makes one request
// of the case's body to the case's backend.
type client struct {
	name  string
	call  func() error
	close func()
	// breaker counts the calls the library refused with ErrBreakerOpen
	// and states its breakers at the end; nil for the peers.
	breaker func() (refused int64, states string)
}

// Client names, in the order of the table's columns.
const (
	nameLib       = "library"
	nameLibH2     = "library HTTP2"
	nameLibTrust  = "library TrustBodies"
	nameRaw       = "raw"
	nameDefault   = "default"
	nameRetryable = "retryablehttp"
	nameOpenIM    = "openim"
)

// peerNames are the -peers a run may choose.
var peerNames = []string{nameDefault, nameRetryable, nameOpenIM}

// target is what a case calls: the backend's URL, the query the library
// adds, and the trusted certificate.
type target struct {
	url, query string
	tls        *tls.Config
	size       int
}

// newClient builds the client called name for c concurrent calls on t.
func newClient(name string, c int, t target) *client {
	body := eventBody(t.size)
	url := t.url + t.query
	switch name {
	case nameLib, nameLibH2, nameLibTrust:
		return libClient(name, t, body)
	case nameRaw:
		cl := rawClient(c, t.tls)
		return &client{name: name, call: func() error { return post(cl, url, body) }, close: cl.CloseIdleConnections}
	case nameDefault:
		// Go's default transport as it is; a clone only to trust the
		// backend's certificate and to start from an empty pool.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = t.tls
		cl := &http.Client{Timeout: 2 * time.Second, Transport: tr}
		return &client{name: name, call: func() error { return post(cl, url, body) }, close: cl.CloseIdleConnections}
	case nameRetryable:
		rc := retryablehttp.NewClient()
		rc.Logger = nil
		tr := rc.HTTPClient.Transport.(*http.Transport)
		tr.TLSClientConfig = t.tls
		return &client{name: name, call: func() error { return retryablePost(rc, url, body) }, close: tr.CloseIdleConnections}
	case nameOpenIM:
		return openIMClient(t, url)
	}
	log.Fatalf("unknown peer %q (want %s)", name, strings.Join(peerNames, ", "))
	return nil
}

// libClient is a Dispatcher with its defaults, but HTTP/2 offered for
// nameLibH2 and bodies not checked for nameLibTrust.
func libClient(name string, t target, body []byte) *client {
	d, err := callback.New(callback.Config{
		URL: t.url, TLSConfig: t.tls, HTTP2: name == nameLibH2, TrustBodies: name == nameLibTrust,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	var refused atomic.Int64
	c := &client{name: name, close: func() { closeNow(d) }}
	c.call = func() error {
		r := d.Before(context.Background(), appID, command, body)
		if errors.Is(r.Err, callback.ErrBreakerOpen) {
			refused.Add(1)
		}
		return r.Err
	}
	c.breaker = func() (int64, string) {
		var states []string
		for _, s := range d.Stats().Breakers {
			states = append(states, s)
		}
		slices.Sort(states)
		return refused.Load(), strings.Join(slices.Compact(states), ",")
	}
	return c
}

// rawClient is a plain net/http HTTP/1.1 client whose pool is sized for
// c concurrent calls, trusting roots for HTTPS if set: the baseline.
func rawClient(c int, roots *tls.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = c
	t.MaxIdleConnsPerHost = c
	t.TLSClientConfig = roots
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	return &http.Client{Transport: t, Timeout: 2 * time.Second}
}

// post POSTs body with the library's headers and reads the answer.
func post(c *http.Client, url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	setHeaders(req.Header)
	return answered(c.Do(req))
}

// retryablePost is post through go-retryablehttp.
func retryablePost(c *retryablehttp.Client, url string, body []byte) error {
	req, err := retryablehttp.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return err
	}
	setHeaders(req.Header)
	return answered(c.Do(req))
}

// answered reads and closes res's body and fails on a non-200 status.
func answered(res *http.Response, err error) error {
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, err = io.Copy(io.Discard, res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", res.StatusCode)
	}
	return err
}

// openIMAnswer is the App's answer as the OpenIM-style peer decodes it.
type openIMAnswer struct {
	Code int    `json:"code"`
	Msg  string `json:"msg"`
}

// openIMClient calls the way OpenIM's webhook client does: Go's default
// transport with MaxConnsPerHost 100 and a 2 s timeout, the request
// struct marshalled per call, the answer read whole and unmarshalled into
// a struct, one log line per call (formatted, to io.Discard).
func openIMClient(t target, url string) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = 100
	tr.TLSClientConfig = t.tls
	cl := &http.Client{Timeout: 2 * time.Second, Transport: tr}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ev := newEvent(t.size)
	if b, _ := json.Marshal(ev); !bytes.Equal(b, eventBody(t.size)) {
		log.Fatal("the OpenIM-style request is not the others' bytes")
	}
	call := func() error {
		start := time.Now()
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(b))
		if err != nil {
			return err
		}
		setHeaders(req.Header)
		res, err := cl.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		var a openIMAnswer
		if err := json.Unmarshal(data, &a); err != nil {
			return err
		}
		logger.Info("webhook callback", "url", t.url, "command", command, "code", a.Code, "cost", time.Since(start))
		if a.Code != 200 {
			return fmt.Errorf("code %d", a.Code)
		}
		return nil
	}
	return &client{name: nameOpenIM, call: call, close: cl.CloseIdleConnections}
}
