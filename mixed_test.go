package callback_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
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

// TestMixedProtocolsWithoutGlue: one Dispatcher, one Resolver, three apps
// on three protocols, and IM code that does not look at the protocol: the
// command comes from a table, the Response says the protocol, Apply gives
// the body to deliver and to send with After, and one WithEventID serves
// both calls. Each App rewrites the message its own way.
func TestMixedProtocolsWithoutGlue(t *testing.T) {
	type app struct {
		proto         callback.Protocol
		before, after string
		body          string // the message event the IM builds for it
		rewrite       string // the App's rewrite, in its protocol
		want          string // the body the After must carry
	}
	apps := map[int]app{
		1: {callback.AppCommand, command.MessageSendBefore, command.MessageSendAfter,
			`{"fromId":"a","text":"hello spam"}`, `{"fromId":"a","text":"hello ****"}`,
			`{"fromId":"a","text":"hello ****"}`},
		2: {callback.Tencent, tencent.C2CBeforeSendMsg, tencent.C2CAfterSendMsg,
			`{"From_Account":"a","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello spam"}}],"CloudCustomData":"x"}`,
			`{"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello ****"}}]}`,
			`{"From_Account":"a","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello ****"}}],"CloudCustomData":"x"}`},
		3: {callback.OpenIM, openim.BeforeSendSingleMsg, openim.AfterSendSingleMsg,
			`{"sendID":"a","content":"{\"content\":\"hello spam\"}","atUserList":[]}` + "\n",
			`{"content":"{\"content\":\"hello ****\"}","atUserIDList":["b"],"ex":null}`,
			`{"sendID":"a","content":"{\"content\":\"hello ****\"}","atUserList":["b"]}`},
	}
	var mu sync.Mutex
	afters := map[int][]*receiver.Request{}
	endpoints := map[int]callback.Endpoint{}
	for id, a := range apps {
		h, err := receiver.New(receiver.Config{Protocol: a.proto, Dedup: 100, Logger: discardLogger()})
		require.NoError(t, err)
		h.Handle(a.before, func(context.Context, *receiver.Request) (receiver.Decision, error) {
			return receiver.Rewrite(json.RawMessage(a.rewrite)), nil
		})
		h.Handle(a.after, func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
			mu.Lock()
			defer mu.Unlock()
			afters[id] = append(afters[id], req)
			return receiver.Allow(), nil
		})
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		endpoints[id] = callback.Endpoint{URL: srv.URL + "/cb", Protocol: a.proto}
	}
	resolver := callback.ResolverFunc(func(_ context.Context, id int) (callback.Endpoint, error) {
		if ep, ok := endpoints[id]; ok {
			return ep, nil
		}
		return callback.Endpoint{}, callback.ErrUnknownApp
	})
	d, _ := newDispatcher(t, callback.Config{Resolver: resolver})

	// The IM server's code, the same for every app.
	send := func(appID int, before, after, msgKey string, body []byte) callback.Response {
		ctx := callback.WithEventID(context.Background(), msgKey)
		r := d.Before(ctx, appID, before, body)
		if !r.OK() {
			return r
		}
		body, err := r.Apply(body)
		require.NoError(t, err)
		require.NoError(t, d.After(ctx, appID, after, body))
		return r
	}
	for id, a := range apps {
		r := send(id, a.before, a.after, "msg-"+a.proto.String(), []byte(a.body))
		require.NoError(t, r.Err)
		assert.Equal(t, a.proto, r.Protocol, "app %d: the Response says its protocol", id)
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(afters[1]) > 0 && len(afters[2]) > 0 && len(afters[3]) > 0
	}, 30*time.Second, 5*time.Millisecond, "every After delivered")
	require.NoError(t, d.Close(context.Background()))
	mu.Lock()
	defer mu.Unlock()
	for id, a := range apps {
		require.Len(t, afters[id], 1, "app %d: the After once, not refused as a replay of the Before", id)
		got := afters[id][0]
		assert.JSONEq(t, a.want, string(got.Body), "app %d (%s): the After carries the rewritten message", id, a.proto)
		assert.Equal(t, "msg-"+a.proto.String(), got.ID)
	}
}

// TestApplyTencentRefusedMembers: RefusedMembers_Account removes those
// accounts from an invitation's members, the rest of the body unchanged.
func TestApplyTencentRefusedMembers(t *testing.T) {
	body := []byte(`{"CallbackCommand":"Group.CallbackBeforeInviteJoinGroup","GroupId":"g1","DestinationMembers":[{"Member_Account":"bob"},{"Member_Account":"eve"}],"EventTime":1}`)
	r := callback.Response{Action: callback.Allow, Protocol: callback.Tencent,
		Data: json.RawMessage(`{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","RefusedMembers_Account":["eve"]}`)}
	out, err := r.Apply(body)
	require.NoError(t, err)
	assert.Equal(t, `{"CallbackCommand":"Group.CallbackBeforeInviteJoinGroup","GroupId":"g1","DestinationMembers":[{"Member_Account":"bob"}],"EventTime":1}`, string(out))

	// No changes: the body itself.
	r.Data = nil
	out, err = r.Apply(body)
	require.NoError(t, err)
	assert.Equal(t, body, out)

	// A deny's Data is not applied.
	r = callback.Response{Action: callback.Deny, Protocol: callback.AppCommand, Data: json.RawMessage(`{"x":1}`)}
	out, err = r.Apply(body)
	require.NoError(t, err)
	assert.Equal(t, body, out)

	// A body that is not an object cannot take Tencent's fields.
	r = callback.Response{Action: callback.Allow, Protocol: callback.Tencent, Data: json.RawMessage(`{"ErrorCode":0,"MsgBody":[]}`)}
	_, err = r.Apply([]byte(`[1]`))
	assert.Error(t, err)
}
