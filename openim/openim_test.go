package openim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/openim"
	"github.com/imcallback/callback/receiver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// commonReq is OpenIM's message hook body (CommonCallbackReq), as an App
// backend written from OpenIM's documentation decodes it.
type commonReq struct {
	SendID           string   `json:"sendID"`
	CallbackCommand  string   `json:"callbackCommand"`
	ServerMsgID      string   `json:"serverMsgID"`
	ClientMsgID      string   `json:"clientMsgID"`
	OperationID      string   `json:"operationID"`
	SenderPlatformID int32    `json:"senderPlatformID"`
	SenderNickname   string   `json:"senderNickname"`
	SessionType      int32    `json:"sessionType"`
	MsgFrom          int32    `json:"msgFrom"`
	ContentType      int32    `json:"contentType"`
	Status           int32    `json:"status"`
	SendTime         int64    `json:"sendTime"`
	CreateTime       int64    `json:"createTime"`
	Content          string   `json:"content"`
	Seq              uint32   `json:"seq"`
	AtUserIDList     []string `json:"atUserList"`
	FaceURL          string   `json:"faceURL"`
	Ex               string   `json:"ex"`
	RecvID           string   `json:"recvID"`
	UserIDList       []string `json:"userIDList"`
}

// commonResp is OpenIM's CommonCallbackResp.
type commonResp struct {
	ActionCode int    `json:"actionCode"`
	ErrCode    int    `json:"errCode"`
	ErrMsg     string `json:"errMsg"`
	ErrDlt     string `json:"errDlt"`
	NextCode   int    `json:"nextCode"`
}

// msgModifyResp is OpenIM's CallbackMsgModifyCommandResp, in part: its
// fields are pointers, null meaning unchanged.
type msgModifyResp struct {
	commonResp
	Content       *string   `json:"content"`
	Ex            *string   `json:"ex"`
	AtUserIDList  *[]string `json:"atUserIDList"`
	SenderFaceURL *string   `json:"senderFaceURL"`
	SenderNick    *string   `json:"senderNickname"`
}

// pushResp is OpenIM's CallbackBeforePushResp.
type pushResp struct {
	commonResp
	UserIDs []string `json:"userIDList"`
}

// body is a single-chat message hook body as OpenIM writes it: with
// json.NewEncoder, so it ends in a newline.
func body(t *testing.T, cmd string) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, json.NewEncoder(&b).Encode(commonReq{
		SendID: "u1", RecvID: "u2", CallbackCommand: cmd, ServerMsgID: "s1", ClientMsgID: "c1",
		OperationID: "op-1", SessionType: 1, MsgFrom: 100, ContentType: 101, SendTime: 1700000000000,
		Content: `{"content":"hello"}`, AtUserIDList: []string{}, FaceURL: "http://a/f.png", Ex: "",
	}))
	return b.Bytes()
}

// docApp is an App backend written the way OpenIM's documentation example
// is: one handler per hook, routed by the path under its callback URL,
// decoding OpenIM's request and answering with json.NewEncoder and 200.
type docApp struct {
	*httptest.Server
	mu      sync.Mutex
	got     []*http.Request
	bodies  [][]byte
	answers map[string]any // by command: a value to encode, or a string written as is
}

func newDocApp(t *testing.T, answers map[string]any) *docApp {
	t.Helper()
	a := &docApp{answers: answers}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /callbackExample/{command}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req commonReq
		if err := json.Unmarshal(b, &req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		cmd := r.PathValue("command")
		a.mu.Lock()
		a.got = append(a.got, r)
		a.bodies = append(a.bodies, b)
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		switch ans := a.answers[cmd].(type) {
		case string:
			_, _ = io.WriteString(w, ans)
		case nil:
			_ = json.NewEncoder(w).Encode(commonResp{})
		default:
			_ = json.NewEncoder(w).Encode(ans)
		}
	})
	a.Server = httptest.NewServer(mux)
	t.Cleanup(a.Close)
	return a
}

func (a *docApp) requests() ([]*http.Request, [][]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*http.Request(nil), a.got...), append([][]byte(nil), a.bodies...)
}

func newDispatcher(t *testing.T, cfg callback.Config) *callback.Dispatcher {
	t.Helper()
	cfg.Protocol = callback.OpenIM
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.RetryWaitMin, cfg.RetryWaitMax = time.Millisecond, 5*time.Millisecond
	d, err := callback.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	return d
}

func ptr[T any](v T) *T { return &v }

// TestDispatcherToOpenIMApp: the Dispatcher against an App backend written
// from OpenIM's documentation.
func TestDispatcherToOpenIMApp(t *testing.T) {
	app := newDocApp(t, map[string]any{
		"deny":                    commonResp{ActionCode: 0, ErrCode: 5001, ErrMsg: "blocked", NextCode: 1},
		"continue":                commonResp{ActionCode: 1, ErrCode: 5001, ErrMsg: "ignored", NextCode: 1},
		openim.BeforeMsgModify:    msgModifyResp{Content: ptr(`{"content":"h*llo"}`), AtUserIDList: &[]string{"u3"}, SenderFaceURL: ptr("http://a/new.png")},
		openim.BeforeOnlinePush:   pushResp{UserIDs: []string{"u2", "u4"}},
		"garbage":                 "<html>502 Bad Gateway</html>",
		"garbage.closed":          "<html>502 Bad Gateway</html>",
		"errdlt":                  commonResp{ErrCode: 5002, ErrMsg: "no", ErrDlt: "details", NextCode: 1},
		openim.BeforeSendGroupMsg: "{\"actionCode\":0,\"errCode\":0,\"errMsg\":\"\",\"errDlt\":\"\",\"nextCode\":0,\"content\":null}\n",
	})
	d := newDispatcher(t, callback.Config{URL: app.URL + "/callbackExample?k=v",
		Commands: map[string]callback.Rule{"garbage.closed": {FailClosed: true}}})
	ctx := context.Background()

	t.Run("request as OpenIM sends it", func(t *testing.T) {
		b := body(t, openim.BeforeSendSingleMsg)
		r := d.Before(callback.WithEventID(ctx, "op-77"), 1, openim.BeforeSendSingleMsg, b)
		require.NoError(t, r.Err)
		assert.Equal(t, callback.Allow, r.Action)
		assert.Equal(t, callback.OpenIM, r.Protocol)
		assert.Equal(t, 0, r.Code)
		reqs, bodies := app.requests()
		req := reqs[len(reqs)-1]
		assert.Equal(t, "/callbackExample/"+openim.BeforeSendSingleMsg, req.URL.Path)
		assert.Equal(t, "k=v", req.URL.RawQuery, "the URL's own query, nothing added")
		assert.Equal(t, "application/json; charset=utf-8", req.Header.Get("Content-Type"))
		assert.Equal(t, "op-77"+callback.BeforeIDSuffix, req.Header.Get("operationID"))
		assert.Equal(t, b, bodies[len(bodies)-1], "the body byte for byte, its newline kept")
	})
	t.Run("deny 5001 blocked", func(t *testing.T) {
		r := d.Before(ctx, 1, "deny", body(t, "deny"))
		require.NoError(t, r.Err)
		assert.Equal(t, callback.Deny, r.Action)
		assert.Equal(t, 5001, r.Code)
		assert.Equal(t, "blocked", r.Msg)
	})
	t.Run("actionCode 1 and nextCode 1 allow", func(t *testing.T) {
		r := d.Before(ctx, 1, "continue", body(t, "continue"))
		require.NoError(t, r.Err)
		assert.Equal(t, callback.Allow, r.Action)
	})
	t.Run("errDlt reachable in Data", func(t *testing.T) {
		r := d.Before(ctx, 1, "errdlt", body(t, "errdlt"))
		require.NoError(t, r.Err)
		assert.Equal(t, callback.Deny, r.Action)
		var a commonResp
		require.NoError(t, json.Unmarshal(r.Data, &a))
		assert.Equal(t, "details", a.ErrDlt)
	})
	t.Run("null fields change nothing", func(t *testing.T) {
		b := body(t, openim.BeforeSendGroupMsg)
		r := d.Before(ctx, 1, openim.BeforeSendGroupMsg, b)
		require.NoError(t, r.Err)
		assert.Nil(t, r.Data)
		out, err := r.Apply(b)
		require.NoError(t, err)
		assert.Equal(t, b, out)
	})
	t.Run("beforeMsgModify rewrites content", func(t *testing.T) {
		b := body(t, openim.BeforeMsgModify)
		r := d.Before(ctx, 1, openim.BeforeMsgModify, b)
		require.NoError(t, r.Err)
		require.Equal(t, callback.Allow, r.Action)
		out, err := r.Apply(b)
		require.NoError(t, err)
		var m commonReq
		require.NoError(t, json.Unmarshal(out, &m))
		assert.Equal(t, `{"content":"h*llo"}`, m.Content)
		assert.Equal(t, []string{"u3"}, m.AtUserIDList, "atUserIDList is the body's atUserList")
		assert.Equal(t, "http://a/new.png", m.FaceURL, "senderFaceURL is the body's faceURL")
		assert.Equal(t, "u1", m.SendID, "the rest unchanged")
		assert.NotContains(t, string(out), "senderFaceURL")
		assert.NotContains(t, string(out), "actionCode")
	})
	t.Run("push hook userIDList", func(t *testing.T) {
		b := body(t, openim.BeforeOnlinePush)
		r := d.Before(ctx, 1, openim.BeforeOnlinePush, b)
		require.NoError(t, r.Err)
		out, err := r.Apply(b)
		require.NoError(t, err)
		var m commonReq
		require.NoError(t, json.Unmarshal(out, &m))
		assert.Equal(t, []string{"u2", "u4"}, m.UserIDList)
	})
	t.Run("non-JSON answer fails open", func(t *testing.T) {
		r := d.Before(ctx, 1, "garbage", body(t, "garbage"))
		assert.ErrorIs(t, r.Err, callback.ErrBadAnswer)
		assert.Equal(t, callback.Allow, r.Action, "OpenIM's failedContinue, as its users expect it")
		assert.Equal(t, 0, r.Code)
		r = d.Before(ctx, 1, "garbage.closed", body(t, "garbage.closed"))
		assert.ErrorIs(t, r.Err, callback.ErrBadAnswer)
		assert.Equal(t, callback.Deny, r.Action, "a FailClosed command")
	})
	t.Run("after delivered once", func(t *testing.T) {
		before, _ := app.requests()
		n := len(before)
		d2 := newDispatcher(t, callback.Config{URL: app.URL + "/callbackExample"})
		require.NoError(t, d2.After(callback.WithEventID(ctx, "op-9"), 1, openim.AfterSendSingleMsg, body(t, openim.AfterSendSingleMsg)))
		require.NoError(t, d2.Close(context.Background()))
		reqs, _ := app.requests()
		require.Len(t, reqs, n+1)
		assert.Equal(t, "/callbackExample/"+openim.AfterSendSingleMsg, reqs[n].URL.Path)
		assert.Equal(t, "op-9", reqs[n].Header.Get("operationID"))
	})
}

// openIMPost sends a webhook the way OpenIM's webhook client does: the
// command appended to the URL, json.NewEncoder's body, an operationID
// header, and the answer parsed into resp whatever the status.
func openIMPost(t *testing.T, url, command, operationID string, req any, resp any) {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, json.NewEncoder(&b).Encode(req))
	hr, err := http.NewRequest(http.MethodPost, url+"/"+command, &b)
	require.NoError(t, err)
	hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	hr.Header.Set("operationID", operationID)
	res, err := http.DefaultClient.Do(hr)
	require.NoError(t, err)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(out, resp), "answer %q", out)
}

// refused is OpenIM's Parse rule.
func refused(r commonResp) bool { return r.ActionCode == 0 && r.NextCode == 1 }

// TestOpenIMSenderToReceiver: package receiver answers a sender written
// the way OpenIM's webhook client is.
func TestOpenIMSenderToReceiver(t *testing.T) {
	h, err := receiver.New(receiver.Config{Protocol: callback.OpenIM, Dedup: 100, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	var mu sync.Mutex
	var seen []*receiver.Request
	note := func(req *receiver.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, req)
	}
	h.Handle(openim.BeforeSendSingleMsg, func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		note(req)
		var m commonReq
		if err := json.Unmarshal(req.Body, &m); err != nil {
			return receiver.Decision{}, err
		}
		if strings.Contains(m.Content, "spam") {
			return receiver.Deny(5001, "blocked"), nil
		}
		return receiver.Allow(), nil
	})
	h.Handle(openim.BeforeMsgModify, func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		note(req)
		return receiver.Rewrite(json.RawMessage(`{"content":"{\"content\":\"h*llo\"}","atUserIDList":["u3"]}`)), nil
	})
	h.Handle(openim.BeforeOfflinePush, func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		note(req)
		return receiver.Rewrite(json.RawMessage(`{"userIDList":["u2"]}`)), nil
	})
	h.Handle(openim.AfterSendSingleMsg, func(_ context.Context, req *receiver.Request) (receiver.Decision, error) {
		note(req)
		return receiver.Allow(), nil
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	url := srv.URL + "/callbackExample"

	msg := commonReq{SendID: "u1", RecvID: "u2", SessionType: 1, Content: `{"content":"hello"}`}

	var allow commonResp
	openIMPost(t, url, openim.BeforeSendSingleMsg, "op-1", msg, &allow)
	assert.False(t, refused(allow), "allowed: %+v", allow)
	assert.Equal(t, commonResp{}, allow)

	spam := msg
	spam.Content = `{"content":"buy spam"}`
	var deny commonResp
	openIMPost(t, url, openim.BeforeSendSingleMsg, "op-2", spam, &deny)
	assert.True(t, refused(deny), "refused: %+v", deny)
	assert.Equal(t, 5001, deny.ErrCode)
	assert.Equal(t, "blocked", deny.ErrMsg)

	var mod msgModifyResp
	openIMPost(t, url, openim.BeforeMsgModify, "op-3", msg, &mod)
	assert.False(t, refused(mod.commonResp))
	require.NotNil(t, mod.Content)
	assert.Equal(t, `{"content":"h*llo"}`, *mod.Content)
	require.NotNil(t, mod.AtUserIDList)
	assert.Equal(t, []string{"u3"}, *mod.AtUserIDList)
	assert.Nil(t, mod.Ex, "unchanged fields are absent: null to OpenIM")

	var push pushResp
	openIMPost(t, url, openim.BeforeOfflinePush, "op-4", msg, &push)
	assert.False(t, refused(push.commonResp))
	assert.Equal(t, []string{"u2"}, push.UserIDs)

	var after commonResp
	openIMPost(t, url, openim.AfterSendSingleMsg, "op-5", msg, &after)
	assert.False(t, refused(after))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 5)
	assert.Equal(t, openim.BeforeSendSingleMsg, seen[0].Command, "routed by the last path segment")
	assert.Equal(t, "op-1", seen[0].ID, "OpenIM's operationID is the event's ID")
	assert.Equal(t, 0, seen[0].AppID, "OpenIM carries no app")
	assert.Equal(t, openim.AfterSendSingleMsg, seen[4].Command)
}

// TestOpenIMReceiverRefuses: what the receiver answers for OpenIM requests
// it cannot handle, and decisions OpenIM cannot express.
func TestOpenIMReceiverRefuses(t *testing.T) {
	h, err := receiver.New(receiver.Config{Protocol: callback.OpenIM, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	h.Handle("zero", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Deny(0, "zero"), nil
	})
	h.Handle("drop", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Drop(), nil
	})
	h.Handle("envelope", func(context.Context, *receiver.Request) (receiver.Decision, error) {
		return receiver.Rewrite(json.RawMessage(`{"NextCode":1}`)), nil
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	post := func(path string) (int, string) {
		res, err := http.Post(srv.URL+path, "application/json", strings.NewReader(`{}`))
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	status, _ := post("/cb/")
	assert.Equal(t, http.StatusBadRequest, status, "no command in the path")
	status, _ = post("/cb/zero")
	assert.Equal(t, http.StatusInternalServerError, status, "a deny with errCode 0 reads as success to OpenIM")
	status, _ = post("/cb/envelope")
	assert.Equal(t, http.StatusInternalServerError, status, "a rewrite may not set a common field")
	status, answer := post("/cb/drop")
	assert.Equal(t, http.StatusOK, status)
	var a commonResp
	require.NoError(t, json.Unmarshal([]byte(answer), &a))
	assert.True(t, refused(a), "a drop is answered as a deny: %s", answer)
	assert.Equal(t, 403, a.ErrCode)
}
