package callback_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"

	"github.com/imcallback/callback"
)

// An App that denies under a shadow rule is not enforced: Before allows,
// with the App's answer on Response.Shadow, in the metrics, the attempt
// log and the span.
func TestShadowRuleDenialIsRecordedNotEnforced(t *testing.T) {
	tp, rec := newTracer(t)
	b := newBackend(t, answerJSON(200, `{"code":403,"msg":"spam","data":{"text":"***"}}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, TracerProvider: tp, Propagator: propagation.TraceContext{},
		Commands: map[string]callback.Rule{"message.send.before": {Shadow: true}}})

	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{"text":"hi"}`))
	require.Equal(t, callback.Allow, r.Action)
	require.Equal(t, 200, r.Code)
	require.Nil(t, r.Data, "a shadow rule applies no change")
	require.NoError(t, r.Err)
	require.NotNil(t, r.Shadow)
	require.Equal(t, callback.Deny, r.Shadow.Action)
	require.Equal(t, 403, r.Shadow.Code)
	require.Equal(t, "spam", r.Shadow.Msg)

	st := d.Stats()
	require.EqualValues(t, 1, st.Total.ShadowDenied)
	require.Zero(t, st.Total.Denied)
	require.Zero(t, st.Total.Allowed)
	at := d.Attempts(callback.AttemptQuery{})
	require.Len(t, at, 1)
	require.Equal(t, callback.OutcomeShadowDenied, at[0].Outcome)
	spans := spansNamed(rec, "callback.before")
	require.Len(t, spans, 1)
	require.Equal(t, "shadow-denied", attrOf(spans[0], "imcallback.outcome").AsString())

	// A rule that is not shadowed enforces the same answer.
	d2, _ := newDispatcher(t, callback.Config{URL: b.URL})
	require.Equal(t, callback.Deny, d2.Before(context.Background(), 1, "message.send.before", []byte(`{}`)).Action)
}

// A failing App under a shadow rule never fails closed, FailClosed or not.
func TestShadowRuleFailsOpen(t *testing.T) {
	b := newBackend(t, answerJSON(500, `{}`))
	d, logs := newDispatcher(t, callback.Config{URL: b.URL,
		Commands: map[string]callback.Rule{"message.send.before": {Shadow: true, FailClosed: true}}})
	r := d.Before(context.Background(), 1, "message.send.before", []byte(`{}`))
	require.Equal(t, callback.Allow, r.Action)
	require.Error(t, r.Err)
	require.NotNil(t, r.Shadow)
	require.Error(t, r.Shadow.Err)
	require.EqualValues(t, 1, d.Stats().Total.FailedOpen)
	require.Zero(t, d.Stats().Total.FailedClosed)
	require.Equal(t, callback.OutcomeFailedOpen, d.Attempts(callback.AttemptQuery{})[0].Outcome)
	require.Contains(t, logs.String(), "callback: before failed")
}
