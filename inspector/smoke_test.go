package inspector_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/inspector"
)

func TestSmoke(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"code":200,"msg":"success"}`)
	}))
	t.Cleanup(app.Close)
	d, err := callback.New(callback.Config{URL: app.URL, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	d.Before(callback.WithEventID(context.Background(), "x<1>"), 1, "message.send.before", []byte(`{}`))
	srv := httptest.NewServer(inspector.New(d, inspector.Options{}))
	t.Cleanup(srv.Close)
	res, err := http.Get(srv.URL + "/api/event?id=x%3C1%3E")
	require.NoError(t, err)
	defer res.Body.Close()
	var ev inspector.EventResponse
	require.NoError(t, json.NewDecoder(res.Body).Decode(&ev))
	require.Len(t, ev.Attempts, 1)
	res2, err := http.Get(srv.URL + "/?id=x%3C1%3E")
	require.NoError(t, err)
	defer res2.Body.Close()
	b, _ := io.ReadAll(res2.Body)
	require.Equal(t, 200, res2.StatusCode, string(b))
	require.Contains(t, string(b), "x&lt;1&gt;")
}
