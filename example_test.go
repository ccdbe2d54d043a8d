package callback_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/tencent"
)

// An App backend that denies messages containing a banned word.
func ExampleDispatcher_Before() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct{ Text string }
		_ = json.NewDecoder(r.Body).Decode(&msg)
		if strings.Contains(msg.Text, "spam") {
			fmt.Fprint(w, `{"code":40001,"msg":"banned word"}`)
			return
		}
		fmt.Fprint(w, `{"code":200,"msg":"success"}`)
	}))
	defer app.Close()

	d, err := callback.New(callback.Config{URL: app.URL + "/callback"})
	if err != nil {
		panic(err)
	}
	defer d.Close(context.Background())

	r := d.Before(context.Background(), 10000, "message.send.before", []byte(`{"text":"buy spam now"}`))
	if !r.OK() {
		// The IM server passes the App's code and message to its client.
		fmt.Println(r.Action, r.Code, r.Msg)
	}
	// Output: deny 40001 banned word
}

// After returns at once; Close waits until the event has been delivered.
func ExampleDispatcher_After() {
	received := make(chan string, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received <- r.URL.Query().Get("command") + " " + string(body)
	}))
	defer app.Close()

	d, err := callback.New(callback.Config{
		URL: app.URL + "/callback",
		DeadLetter: func(ev callback.Event, err error) {
			slog.Error("undelivered", "webhook_id", ev.ID, "error", err)
		},
	})
	if err != nil {
		panic(err)
	}
	if err := d.After(context.Background(), 10000, "group.member.add.after", []byte(`{"groupId":"g1","members":["u2"]}`)); err != nil {
		fmt.Println("not queued:", err)
	}
	if err := d.Close(context.Background()); err != nil {
		fmt.Println("close:", err)
	}
	fmt.Println(<-received)
	// Output: group.member.add.after {"groupId":"g1","members":["u2"]}
}

// On Tencent's protocol the IM server sends Tencent's command names and
// body shapes, and reads ErrorCode and ErrorInfo as Code and Msg.
func ExampleDispatcher_Before_tencent() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			MsgBody []struct {
				MsgType    string
				MsgContent struct{ Text string }
			}
		}
		_ = json.NewDecoder(r.Body).Decode(&msg)
		for _, el := range msg.MsgBody {
			if el.MsgType == "TIMTextElem" && strings.Contains(el.MsgContent.Text, "spam") {
				fmt.Fprint(w, `{"ActionStatus":"OK","ErrorCode":120001,"ErrorInfo":"banned word"}`)
				return
			}
		}
		fmt.Fprint(w, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)
	}))
	defer app.Close()

	d, err := callback.New(callback.Config{URL: app.URL + "/callback", Protocol: callback.Tencent, Secret: "token"})
	if err != nil {
		panic(err)
	}
	defer d.Close(context.Background())

	for _, text := range []string{"hello", "buy spam now"} {
		body := fmt.Sprintf(`{"CallbackCommand":%q,"From_Account":"jared","To_Account":"Jonh",`+
			`"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":%q}}],"EventTime":1670574414123}`,
			tencent.C2CBeforeSendMsg, text)
		r := d.Before(context.Background(), 1400000000, tencent.C2CBeforeSendMsg, []byte(body))
		fmt.Printf("%s: %v %d %q\n", text, r.Action, r.Code, r.Msg)
	}
	// Output:
	// hello: allow 0 ""
	// buy spam now: deny 120001 "banned word"
}

// A Resolver gives each app its own endpoint. Apps may speak different
// protocols: Dispatcher.Endpoint tells the IM server which one before it
// builds the body.
func ExampleResolver() {
	var gotSeed, gotTencent string
	seed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotSeed = r.URL.Query().Get("command")
		fmt.Fprint(w, `{"code":200,"msg":"success"}`)
	}))
	defer seed.Close()
	tencentApp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotTencent = r.URL.Query().Get("CallbackCommand")
		fmt.Fprint(w, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)
	}))
	defer tencentApp.Close()

	// In production: sqlapps, or any store with a cache in front of it.
	apps := map[int]callback.Endpoint{
		10000:      {URL: seed.URL},
		1400000000: {URL: tencentApp.URL, Protocol: callback.Tencent},
	}
	d, err := callback.New(callback.Config{
		Resolver: callback.ResolverFunc(func(_ context.Context, appID int) (callback.Endpoint, error) {
			if ep, ok := apps[appID]; ok {
				return ep, nil
			}
			return callback.Endpoint{}, callback.ErrUnknownApp
		}),
	})
	if err != nil {
		panic(err)
	}
	defer d.Close(context.Background())

	// The IM server's message, in the shape and under the command name of
	// the app's protocol.
	send := func(ctx context.Context, appID int, from, to, text string) callback.Response {
		ep, err := d.Endpoint(ctx, appID)
		if err != nil {
			return callback.Response{Err: err} // unknown app: Before would fail open too
		}
		if ep.Protocol == callback.Tencent {
			body, _ := json.Marshal(map[string]any{
				"CallbackCommand": tencent.C2CBeforeSendMsg,
				"From_Account":    from, "To_Account": to,
				"MsgBody": []map[string]any{{"MsgType": "TIMTextElem", "MsgContent": map[string]string{"Text": text}}},
			})
			return d.Before(ctx, appID, tencent.C2CBeforeSendMsg, body)
		}
		body, _ := json.Marshal(map[string]string{"fromId": from, "toId": to, "text": text})
		return d.Before(ctx, appID, command.MessageSendBefore, body)
	}

	ctx := context.Background()
	r := send(ctx, 10000, "alice", "bob", "hi")
	fmt.Println("seed app:", r.Action, r.Code, gotSeed)
	r = send(ctx, 1400000000, "jared", "Jonh", "hi")
	fmt.Println("tencent app:", r.Action, r.Code, gotTencent)
	r = send(ctx, 42, "eve", "bob", "hi")
	fmt.Println("unknown app:", r.Err)
	// Output:
	// seed app: allow 200 message.send.before
	// tencent app: allow 0 C2C.CallbackBeforeSendMsg
	// unknown app: callback: resolving the app's endpoint failed: app 42: callback: unknown app
}

// A command whose Rule has FailClosed is denied when its callback fails,
// here because nothing answers; other commands fail open.
func ExampleRule_failClosed() {
	d, err := callback.New(callback.Config{
		URL:     "http://127.0.0.1:1/callback", // nothing listens on port 1
		Timeout: time.Second,
		Commands: map[string]callback.Rule{
			command.FriendAddBefore: {FailClosed: true},
		},
		Logger: slog.New(slog.DiscardHandler), // failures are logged at Error level
	})
	if err != nil {
		panic(err)
	}
	defer d.Close(context.Background())

	ctx := context.Background()
	r := d.Before(ctx, 10000, command.FriendAddBefore, []byte(`{"fromId":"alice","toId":"bob"}`))
	fmt.Println(command.FriendAddBefore, r.Action, r.Code, r.Msg, r.Err != nil)
	r = d.Before(ctx, 10000, command.MessageSendBefore, []byte(`{"text":"hi"}`))
	fmt.Println(command.MessageSendBefore, r.Action, r.Code, r.Msg, r.Err != nil)
	// Output:
	// friend.add.before deny 503 callback failed true
	// message.send.before allow 200 success true
}

// WithClient passes the client's IP and platform, which Tencent's protocol
// sends as ClientIP and OptPlatform.
func ExampleWithClient() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		fmt.Println(q.Get("ClientIP"), q.Get("OptPlatform"))
		fmt.Fprint(w, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)
	}))
	defer app.Close()
	d, err := callback.New(callback.Config{URL: app.URL, Protocol: callback.Tencent})
	if err != nil {
		panic(err)
	}
	defer d.Close(context.Background())

	conn := struct{ RemoteIP string }{"203.0.113.9"} // the client's connection
	body := []byte(`{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"jared","To_Account":"Jonh","MsgBody":[]}`)
	ctx, appID := context.Background(), 1400000000
	ctx = callback.WithClient(ctx, conn.RemoteIP, "Android")
	resp := d.Before(ctx, appID, tencent.C2CBeforeSendMsg, body)
	fmt.Println(resp.Action)
	// Output:
	// 203.0.113.9 Android
	// allow
}

// WithOrderKey delivers a conversation's After events one at a time, in
// order: the recall goes only once the message was answered.
func ExampleWithOrderKey() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.URL.Query().Get("command"))
		fmt.Fprint(w, `{"code":200}`)
	}))
	defer app.Close()
	d, err := callback.New(callback.Config{URL: app.URL})
	if err != nil {
		panic(err)
	}
	ctx, appID, groupID := context.Background(), 1, "42"
	body := []byte(`{"groupId":"42"}`)
	send := func(parent context.Context) error {
		ctx := callback.WithOrderKey(parent, "group:"+groupID)
		err := d.After(ctx, appID, "group.message.after", body)
		if err != nil {
			return err
		}
		return d.After(ctx, appID, "group.recall.after", body)
	}
	if err := send(ctx); err != nil {
		panic(err)
	}
	_ = d.Close(context.Background()) // delivers both
	// Output:
	// group.message.after
	// group.recall.after
}
