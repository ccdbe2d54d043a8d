package callback_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

func TestAttemptLogBefore(t *testing.T) {
	b := newBackend(t, answerJSON(http.StatusOK, `{"code":200,"msg":"success"}`))
	d, err := callback.New(callback.Config{URL: b.URL + "/cb?token=secret", Logger: discardLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })

	ctx := callback.WithEventID(context.Background(), "ev-1")
	resp := d.Before(ctx, 7, "message.send.before", []byte(`{"text":"hi"}`))
	require.NoError(t, resp.Err)

	got := d.Attempts(callback.AttemptQuery{EventID: "ev-1"})
	require.Len(t, got, 1)
	a := got[0]
	require.Equal(t, uint64(1), a.Seq)
	require.Equal(t, callback.KindBefore, a.Kind)
	require.Equal(t, 7, a.AppID)
	require.Equal(t, "message.send.before", a.Command)
	require.Equal(t, 1, a.Attempt)
	require.Equal(t, callback.OutcomeAllowed, a.Outcome)
	require.Equal(t, 200, a.Status)
	require.Positive(t, a.Latency)
	require.Empty(t, a.Error)
	require.Nil(t, a.Body, "no body without AttemptBodies")
	require.NotContains(t, a.Endpoint, "secret", "the query is hashed")
}
