// Command appbackend is an App backend built on package receiver: it
// receives an IM server's callbacks, checks their signatures, refuses
// messages with banned words, masks rude words, silently drops spam and
// logs after-events.
//
//	go run ./examples/appbackend                          # serve on 127.0.0.1:8989 until Ctrl-C
//	go run ./examples/appbackend -demo                    # serve, send a few callbacks to itself, exit
//	CALLBACK_SECRET=whsec_... go run ./examples/appbackend  # verify Standard Webhooks signatures
//	go run ./examples/appbackend -protocol tencent -secret mytoken
//
// With -demo and no secret, it makes up a secret for the run, so the demo
// shows signed callbacks.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/receiver"
	"github.com/imcallback/callback/tencent"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "appbackend:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("appbackend", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8989", "address to listen on")
	secret := fs.String("secret", os.Getenv("CALLBACK_SECRET"), "Standard Webhooks secret(s) for seed, token(s) for tencent; default $CALLBACK_SECRET")
	var proto callback.Protocol
	fs.TextVar(&proto, "protocol", callback.AppCommand, "wire protocol: appcommand or tencent")
	demo := fs.Bool("demo", false, "send a few callbacks to this App backend through a Dispatcher, print the outcomes and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *demo && *secret == "" {
		*secret = makeSecret(proto)
	}

	logger := slog.New(slog.NewTextHandler(out, nil))
	h, err := newApp(proto, *secret, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/callback"
	fmt.Fprintf(out, "App backend (%s, signed: %v) on %s\n", proto, *secret != "", url)

	if *demo {
		err = sendDemo(ctx, out, callback.Config{URL: url, Protocol: proto, Secret: *secret, Logger: logger})
	} else {
		sig, stop := signal.NotifyContext(ctx, os.Interrupt)
		defer stop()
		select {
		case <-sig.Done():
		case err = <-served:
		}
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(err, srv.Shutdown(shutdown))
}

// newApp returns the App backend's handler.
func newApp(proto callback.Protocol, secret string, log *slog.Logger) (*receiver.Handler, error) {
	h, err := receiver.New(receiver.Config{Protocol: proto, Secret: secret, Dedup: 10000, Logger: log})
	if err != nil {
		return nil, err
	}
	before := func(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
		msg, err := readMessage(proto, req.Body)
		if err != nil {
			return receiver.Decision{}, err // 500: the IM server fails open or closed
		}
		text := msg.text()
		switch {
		case strings.Contains(text, "casino"):
			return receiver.Drop(), nil // spam: the sender thinks it went out
		case strings.Contains(text, "forbidden"):
			return receiver.Deny(120001, "message contains a banned word"), nil
		case strings.Contains(text, "darn"):
			return receiver.Rewrite(msg.masked("darn", "****")), nil
		}
		return receiver.Allow(), nil
	}
	after := func(ctx context.Context, req *receiver.Request) (receiver.Decision, error) {
		log.InfoContext(ctx, "after-event", "command", req.Command, "app_id", req.AppID, "webhook_id", req.ID, "bytes", len(req.Body))
		return receiver.Allow(), nil
	}
	h.Handle(command.MessageSendBefore, before)
	h.Handle(tencent.C2CBeforeSendMsg, before)
	h.Handle(tencent.GroupBeforeSendMsg, before)
	h.Handle(command.MessageSendAfter, after)
	h.Handle(tencent.C2CAfterSendMsg, after)
	h.Handle(tencent.GroupAfterSendMsg, after)
	return h, nil
}

// message is a message callback's body: the seed's {"text": ...}, or
// Tencent's MsgBody, a list of elements of which TIMTextElem carries text.
type message struct {
	proto   callback.Protocol
	Text    string       `json:"text"`
	MsgBody []msgElement `json:"MsgBody"`
}

// msgElement is one element of Tencent's MsgBody. MsgContent is kept raw:
// its shape depends on MsgType.
type msgElement struct {
	MsgType    string          `json:"MsgType"`
	MsgContent json.RawMessage `json:"MsgContent"`
}

// textContent is the MsgContent of a TIMTextElem.
type textContent struct {
	Text string `json:"Text"`
}

// readMessage reads a message callback's body in proto's shape.
func readMessage(proto callback.Protocol, body []byte) (*message, error) {
	m := &message{proto: proto}
	if err := json.Unmarshal(body, m); err != nil {
		return nil, err
	}
	return m, nil
}

// text returns the message's text: on Tencent, its TIMTextElem texts.
func (m *message) text() string {
	if m.proto != callback.Tencent {
		return m.Text
	}
	var b strings.Builder
	for _, el := range m.MsgBody {
		var c textContent
		if el.MsgType == "TIMTextElem" && json.Unmarshal(el.MsgContent, &c) == nil {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

// masked returns the rewrite answer with word replaced by mask: the seed's
// {"text": ...}, or Tencent's MsgBody with every TIMTextElem masked and
// the other elements as they were.
func (m *message) masked(word, mask string) json.RawMessage {
	if m.proto != callback.Tencent {
		data, _ := json.Marshal(map[string]string{"text": strings.ReplaceAll(m.Text, word, mask)})
		return data
	}
	body := make([]msgElement, len(m.MsgBody))
	for i, el := range m.MsgBody {
		var c textContent
		if el.MsgType == "TIMTextElem" && json.Unmarshal(el.MsgContent, &c) == nil {
			c.Text = strings.ReplaceAll(c.Text, word, mask)
			el.MsgContent, _ = json.Marshal(c)
		}
		body[i] = el
	}
	data, _ := json.Marshal(map[string]any{"MsgBody": body}) // Tencent's rewrite: MsgBody in the answer
	return data
}

// sendDemo plays the IM server: it asks the App backend about a few
// messages and reports one after-event, in the protocol's commands and
// body shapes.
func sendDemo(ctx context.Context, out io.Writer, cfg callback.Config) error {
	d, err := callback.New(cfg)
	if err != nil {
		return err
	}
	beforeCmd, afterCmd := command.MessageSendBefore, command.MessageSendAfter
	if cfg.Protocol == callback.Tencent {
		beforeCmd, afterCmd = tencent.C2CBeforeSendMsg, tencent.C2CAfterSendMsg
	}
	ctx = callback.WithClient(ctx, "203.0.113.9", "Android")
	var failed error
	for _, text := range []string{"hello", "darn it", "this is forbidden", "win at the casino"} {
		r := d.Before(ctx, 1400000000, beforeCmd, demoBody(cfg.Protocol, beforeCmd, text))
		if r.Err != nil {
			failed = errors.Join(failed, fmt.Errorf("%q: %w", text, r.Err))
		}
		fmt.Fprintf(out, "%-20q -> %-5s code=%d msg=%q data=%s\n", text, r.Action, r.Code, r.Msg, r.Data)
	}
	if err := d.After(ctx, 1400000000, afterCmd, demoBody(cfg.Protocol, afterCmd, "hello")); err != nil {
		failed = errors.Join(failed, err)
	}
	return errors.Join(failed, d.Close(ctx))
}

// demoBody returns a one-to-one message from jared to Jonh: Tencent's
// documented shape on Tencent, the seed's otherwise.
func demoBody(p callback.Protocol, command, text string) []byte {
	if p != callback.Tencent {
		body, _ := json.Marshal(map[string]string{"fromId": "jared", "toId": "Jonh", "text": text})
		return body
	}
	body, _ := json.Marshal(map[string]any{
		"CallbackCommand": command,
		"From_Account":    "jared",
		"To_Account":      "Jonh",
		"MsgRandom":       2256895586,
		"MsgBody":         []any{map[string]any{"MsgType": "TIMTextElem", "MsgContent": map[string]string{"Text": text}}},
		"EventTime":       time.Now().UnixMilli(),
	})
	return body
}

// makeSecret returns a fresh secret for a demo run.
func makeSecret(p callback.Protocol) string {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if p == callback.Tencent {
		return base64.RawURLEncoding.EncodeToString(key)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}
