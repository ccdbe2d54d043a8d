package inspector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/command"
	"github.com/imcallback/callback/inspector"
	"github.com/imcallback/callback/natsqueue"
)

// The inspector answers "where did my callback go?" for one webhook-id.
func ExampleNew() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
	}))
	defer app.Close()
	d, err := callback.New(callback.Config{URL: app.URL + "/callback", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer d.Close(context.Background())

	admin := http.NewServeMux() // the IM server's admin listener, behind its auth
	admin.Handle("/debug/callbacks/", http.StripPrefix("/debug/callbacks", inspector.New(d, inspector.Options{})))
	srv := httptest.NewServer(admin)
	defer srv.Close()

	ctx := callback.WithEventID(context.Background(), "msg-1/before")
	d.Before(ctx, 10000, command.MessageSendBefore, []byte(`{"text":"hi"}`))

	res, err := http.Get(srv.URL + "/debug/callbacks/api/event?id=msg-1/before")
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()
	var ev inspector.EventResponse
	if err := json.NewDecoder(res.Body).Decode(&ev); err != nil {
		panic(err)
	}
	for _, a := range ev.Attempts {
		fmt.Println(a.Kind, a.Attempt, a.Outcome, a.Status)
	}
	fmt.Println(ev.Summary)
	// Output:
	// before 1 allowed 200
	// Before: the App backend answered 200 and the event was allowed.
}

// The README's "Where did my callback go?" blocks, quoted verbatim so that
// they compile (readme_test.go at the module root checks the quote).
func readmeInspector(d *callback.Dispatcher, q *natsqueue.Queue, isAdmin func(*http.Request) bool) *http.ServeMux {
	admin := http.NewServeMux()
	admin.Handle("/debug/callbacks/", http.StripPrefix("/debug/callbacks",
		inspector.New(d, inspector.Options{DeadLetters: q, Authorize: isAdmin})))
	return admin
}

func readmeAttempts(d *callback.Dispatcher, msgKey string) {
	for _, a := range d.Attempts(callback.AttemptQuery{EventID: msgKey}) {
		fmt.Println(a.Time.Format(time.TimeOnly), a.Kind, a.Attempt, a.Outcome, a.Status, a.Latency, a.Error)
	}
}

func readmeReplayOne(ctx context.Context, q *natsqueue.Queue) error {
	dls, err := q.ListDeadLetters(ctx, callback.DeadLetterQuery{ByApp: true, AppID: 10000})
	if err != nil {
		return err
	}
	for _, dl := range dls {
		if err := q.ReplayOne(ctx, dl.AppID, dl.ID); err != nil && !errors.Is(err, callback.ErrNotFound) {
			return err
		}
	}
	return nil
}

// The README's per-tenant inspector (Security), quoted verbatim.
func readmeScope(d *callback.Dispatcher, q *natsqueue.Queue, tenantApp func(*http.Request) (int, bool)) http.Handler {
	tenants := inspector.New(d, inspector.Options{DeadLetters: q,
		Scope: func(r *http.Request) (inspector.Scope, bool) {
			app, ok := tenantApp(r) // your authentication: the tenant's app
			return inspector.Scope{Apps: []int{app}}, ok
		}})
	return tenants
}

var _, _, _, _ = readmeInspector, readmeAttempts, readmeReplayOne, readmeScope
