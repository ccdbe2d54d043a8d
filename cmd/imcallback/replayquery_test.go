package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
)

// TestReplayDeadLettersByQuery: replay --nats selects an app's dead
// letters from natsqueue's store on a real NATS server; a dry run lists
// and counts them and sends nothing, a replay puts them back under their
// own IDs for the node to deliver; other apps' and commands' stay.
func TestReplayDeadLettersByQuery(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.True(t, srv.ReadyForConnections(10*time.Second))

	var accept atomic.Bool
	var mu sync.Mutex
	var delivered []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !accept.Load() {
			w.WriteHeader(http.StatusBadRequest) // dead-lettered at once
			return
		}
		mu.Lock()
		delivered = append(delivered, r.Header.Get("Webhook-Id"))
		mu.Unlock()
		_, _ = w.Write([]byte(`{"ActionStatus":"OK","ErrorCode":0}`))
	}))
	t.Cleanup(backend.Close)

	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx := context.Background()
	o := natsqueue.Options{Stream: "WORK", Subject: "w", DeadLetterStream: "DEAD", DeadLetterSubject: "d"}
	q, err := natsqueue.New(ctx, nc, o)
	require.NoError(t, err)
	d, err := callback.New(callback.Config{URL: backend.URL, Queue: q.ForDispatcher(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		assert.NoError(t, d.Close(cctx))
	})
	for i := range 3 {
		for _, ev := range []struct {
			app int
			cmd string
		}{{7, "C2C.CallbackAfterSendMsg"}, {7, "Group.CallbackAfterSendMsg"}, {8, "C2C.CallbackAfterSendMsg"}} {
			id := "ev-" + strconv.Itoa(ev.app) + "-" + ev.cmd + "-" + strconv.Itoa(i)
			require.NoError(t, d.After(callback.WithEventID(ctx, id), ev.app, ev.cmd, []byte(`{"n":1}`)))
		}
	}
	require.Eventually(t, func() bool {
		n, err := q.DeadLetters(ctx)
		return err == nil && n == 9
	}, 30*time.Second, 10*time.Millisecond, "9 dead letters")

	url := srv.ClientURL()
	base := []string{"replay", "--nats", url, "--stream", "WORK", "--dead-letter-stream", "DEAD", "--app", "7"}
	r := cli(t, "", append(base, "--dry-run", "--error", "status: 400", "--since", "1h")...)
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "dry run: 6 dead letters of app 7 would be replayed")
	assert.Contains(t, r.stdout, "id ev-7-Group.CallbackAfterSendMsg-0  Group.CallbackAfterSendMsg  attempts 1  \"callback: App backend answered a non-2xx status: 400\"")
	assert.NotContains(t, r.stdout, "ev-8-")

	r = cli(t, "", append(base, "--dry-run", "--until", "1h")...)
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "dry run: 0 dead letters")
	r = cli(t, "", append(base, "--dry-run", "--error", "status: 503")...)
	assert.Contains(t, r.stdout, "dry run: 0 dead letters")
	n, err := q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(9), n, "a dry run replays nothing")

	accept.Store(true)
	r = cli(t, "", append(base, "--command", "C2C.CallbackAfterSendMsg", "--rate", "1000")...)
	require.Equal(t, exitAllow, r.code, r.stderr)
	assert.Contains(t, r.stdout, "replayed 3 of 3 dead letters of app 7")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) == 3
	}, 30*time.Second, 10*time.Millisecond, "the replayed events delivered")
	mu.Lock()
	assert.ElementsMatch(t, []string{"ev-7-C2C.CallbackAfterSendMsg-0", "ev-7-C2C.CallbackAfterSendMsg-1", "ev-7-C2C.CallbackAfterSendMsg-2"}, delivered, "replayed under their own IDs")
	mu.Unlock()
	n, err = q.DeadLetters(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(6), n, "the other command's and app's stay")
}

// TestReplayQueryErrors: bad flags are usage errors; a store that is not
// there is a failure, and creates nothing.
func TestReplayQueryErrors(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
	})
	require.NoError(t, err)
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	require.True(t, srv.ReadyForConnections(10*time.Second))
	url := srv.ClientURL()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--nats", url}, exitUsage, "--nats needs --app"},
		{[]string{"--nats", url, "--app", "7", "file"}, exitUsage, "give no FILE"},
		{[]string{"--nats", url, "--app", "7", "--rate", "0"}, exitUsage, "--rate must be positive"},
		{[]string{"--nats", url, "--app", "7", "--since", "yesterday"}, exitUsage, "--since \"yesterday\""},
		{[]string{"--nats", url, "--app", "7"}, exitFailure, "not found: stream CALLBACK_AFTER"},
	} {
		r := cli(t, "", append([]string{"replay"}, tt.args...)...)
		assert.Equal(t, tt.code, r.code, tt.args)
		assert.Contains(t, r.stderr, tt.want, tt.args)
	}
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	_, err = natsqueue.NewAdmin(context.Background(), nc, natsqueue.Options{})
	assert.ErrorIs(t, err, natsqueue.ErrNotFound, "the CLI created no stream")
}
