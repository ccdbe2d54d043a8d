package callback_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/openim"
	"github.com/imcallback/callback/receiver"
	"github.com/imcallback/callback/tencent"
)

// The README's multi-tenant quick start, verbatim, run against one App
// backend per protocol.

var (
	appSecret    = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	tencentToken = "tencent-token"
	apps         map[int]callback.Endpoint
)

func readmeTenants() (*callback.Dispatcher, error) {
	// The IM server's app table (sqlapps keeps one in a database).
	apps = map[int]callback.Endpoint{
		1001: {URL: "https://chat-app.example/im/callback", Secret: appSecret}, // AppCommand, the default
		1002: {URL: "https://tencent-app.example/cb", Protocol: callback.Tencent, Secret: tencentToken},
		1003: {URL: "http://openim-app.example:10006/callbackExample", Protocol: callback.OpenIM},
	}
	// One Dispatcher for every app: the Resolver says where and how each
	// app's callbacks go.
	d, err := callback.New(callback.Config{
		Resolver: callback.ResolverFunc(func(ctx context.Context, appID int) (callback.Endpoint, error) {
			if ep, ok := apps[appID]; ok {
				return ep, nil
			}
			return callback.Endpoint{}, callback.ErrUnknownApp
		}),
	})
	return d, err
}

// sendCommands are the message commands of each protocol.
var sendCommands = map[callback.Protocol][2]string{
	callback.AppCommand: {command.MessageSendBefore, command.MessageSendAfter},
	callback.Tencent:    {tencent.C2CBeforeSendMsg, tencent.C2CAfterSendMsg},
	callback.OpenIM:     {openim.BeforeSendSingleMsg, openim.AfterSendSingleMsg},
}

func send(ctx context.Context, d *callback.Dispatcher, appID int, msg message) error {
	p := apps[appID].Protocol
	cmds := sendCommands[p]
	body := msg.encode(p)                    // the body shape its App backend reads
	ctx = callback.WithEventID(ctx, msg.Key) // one ID for the Before and the After
	resp := d.Before(ctx, appID, cmds[0], body)
	switch resp.Action {
	case callback.Deny:
		return denied(resp.Code, resp.Msg)
	case callback.Drop:
		return nil
	}
	body, err := resp.Apply(body) // the App's changes, in any protocol
	if err != nil {
		return err
	}
	deliver(body)
	return d.After(ctx, appID, cmds[1], body)
}

// message is the IM server's own message, which it encodes in the shape
// each protocol's App backends read.
type message struct {
	Key, From, To, Text string
}

func (m message) encode(p callback.Protocol) []byte {
	var v any
	switch p {
	case callback.Tencent:
		v = map[string]any{"CallbackCommand": sendCommands[p][0], "From_Account": m.From, "To_Account": m.To,
			"MsgBody": []any{map[string]any{"MsgType": "TIMTextElem", "MsgContent": map[string]string{"Text": m.Text}}}}
	case callback.OpenIM:
		content, _ := json.Marshal(map[string]string{"content": m.Text})
		v = map[string]any{"callbackCommand": sendCommands[p][0], "sendID": m.From, "recvID": m.To,
			"sessionType": 1, "contentType": 101, "content": string(content)}
	default:
		v = map[string]string{"fromId": m.From, "toId": m.To, "text": m.Text}
	}
	b, _ := json.Marshal(v)
	return b
}

func TestREADMETenantsRuns(t *testing.T) {
	d, err := readmeTenants()
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })

	// The same table, pointed at a receiver per protocol that masks
	// "darn" its own way; the Resolver reads the table on every call.
	rewrites := map[callback.Protocol]string{
		callback.AppCommand: `{"fromId":"a","toId":"b","text":"d*** it"}`,
		callback.Tencent:    `{"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"d*** it"}}]}`,
		callback.OpenIM:     `{"content":"{\"content\":\"d*** it\"}"}`,
	}
	var mu sync.Mutex
	afters := map[int]string{}
	for id, ep := range apps {
		h, err := receiver.New(receiver.Config{Protocol: ep.Protocol, Secret: ep.Secret, Dedup: 100, Logger: discardLogger()})
		require.NoError(t, err)
		cmds := sendCommands[ep.Protocol]
		h.Handle(cmds[0], func(context.Context, *receiver.Request) (receiver.Decision, error) {
			return receiver.Rewrite(json.RawMessage(rewrites[ep.Protocol])), nil
		})
		h.Handle(cmds[1], func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
			mu.Lock()
			defer mu.Unlock()
			afters[id] = string(req.Body)
			return receiver.Allow(), nil
		})
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		ep.URL = srv.URL + "/cb"
		apps[id] = ep
	}
	readmeLog = nil
	for _, id := range []int{1001, 1002, 1003} {
		require.NoError(t, send(context.Background(), d, id, message{Key: "m-" + strconv.Itoa(id), From: "a", To: "b", Text: "darn it"}))
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(afters) == 3
	}, 30*time.Second, 5*time.Millisecond, "every After")
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, afters[1001], `"text":"d*** it"`)
	assert.Contains(t, afters[1002], `"Text":"d*** it"`)
	assert.Contains(t, afters[1002], `"From_Account":"a"`)
	assert.Contains(t, afters[1003], `"content":"{\"content\":\"d*** it\"}"`)
	assert.Contains(t, afters[1003], `"sendID":"a"`)
	assert.Len(t, readmeLog, 3, "each message delivered")
}
