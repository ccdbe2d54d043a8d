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

	"github.com/imcallback/callback"
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
