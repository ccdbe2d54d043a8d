package natsqueue_test

import (
	"context"
	"testing"
	"time"

	"github.com/imcallback/callback/natsqueue"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNewRejects: bad options and a stream that cannot hold the queue are
// clear errors at start-up, and nothing is left running.
func TestNewRejects(t *testing.T) {
	srv := startServer(t, t.TempDir())
	nc := connect(t, srv.ClientURL())
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "LIMITS", Subjects: []string{"limits.>"}})
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "ELSEWHERE", Subjects: []string{"elsewhere.>"}, Retention: jetstream.WorkQueuePolicy})
	require.NoError(t, err)

	tests := []struct {
		name string
		o    natsqueue.Options
		want error
	}{
		{"negative AckWait", natsqueue.Options{AckWait: -time.Second}, natsqueue.ErrInvalidOptions},
		{"negative Replicas", natsqueue.Options{Replicas: -1}, natsqueue.ErrInvalidOptions},
		{"Heartbeat under 500 ms", natsqueue.Options{Heartbeat: 100 * time.Millisecond}, natsqueue.ErrInvalidOptions},
		{"Heartbeat over 30 s", natsqueue.Options{Heartbeat: time.Minute}, natsqueue.ErrInvalidOptions},
		{"dead letters on the queue's stream", natsqueue.Options{DeadLetterStream: "CALLBACK_AFTER"}, natsqueue.ErrInvalidOptions},
		{"stream with limits retention", natsqueue.Options{Stream: "LIMITS", Subject: "limits"}, natsqueue.ErrStreamMismatch},
		{"stream on other subjects", natsqueue.Options{Stream: "ELSEWHERE", Subject: "here"}, natsqueue.ErrStreamMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := natsqueue.New(ctx, nc, tt.o)
			assert.Nil(t, q)
			assert.ErrorIs(t, err, tt.want, "got %v, want %v", err, tt.want)
		})
	}
	t.Run("no connection", func(t *testing.T) {
		_, err := natsqueue.New(ctx, nil, natsqueue.Options{})
		assert.ErrorIs(t, err, natsqueue.ErrInvalidOptions)
	})
	t.Run("embedded without a directory", func(t *testing.T) {
		_, err := natsqueue.Embedded(ctx, "", natsqueue.Options{})
		assert.ErrorIs(t, err, natsqueue.ErrInvalidOptions)
	})
	t.Run("embedded with bad options shuts its server down", func(t *testing.T) {
		_, err := natsqueue.Embedded(ctx, t.TempDir(), natsqueue.Options{Prefetch: -1})
		assert.ErrorIs(t, err, natsqueue.ErrInvalidOptions)
	})
}
