package jsonobj_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback/internal/jsonobj"
)

func TestFields(t *testing.T) {
	f, err := jsonobj.Fields([]byte(` {"code":200, "msg":"ok", "data":{"code":1,"Code":2}} `))
	require.NoError(t, err, "nested keys are not the top level's business")
	assert.Equal(t, `200`, string(f["code"]))
	assert.Equal(t, `{"code":1,"Code":2}`, string(f["data"]))
	assert.Len(t, f, 3)

	for _, tt := range []struct{ name, in string }{
		{"exact duplicate", `{"code":403,"code":200}`},
		{"case variant", `{"code":403,"Code":200}`},
		{"escaped case variant", `{"code":403,"\u0043ode":200}`},
		{"kelvin sign", `{"k":1,"\u212a":2}`},
		{"long s", `{"s":1,"\u017f":2}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := jsonobj.Fields([]byte(tt.in))
			assert.True(t, errors.Is(err, jsonobj.ErrAmbiguous), "got %v, want ErrAmbiguous", err)
		})
	}
	for _, in := range []string{``, `[]`, `"x"`, `{"a":1`, `{"a":1}{}`, `{"a":1} x`, "{\"a\":\"\xff\"}", `{"a":}`} {
		_, err := jsonobj.Fields([]byte(in))
		assert.Error(t, err, "%q", in)
		assert.False(t, errors.Is(err, jsonobj.ErrAmbiguous), "%q: %v", in, err)
	}
}

func TestCollides(t *testing.T) {
	assert.True(t, jsonobj.Collides("errorcode", "ActionStatus", "ErrorCode"))
	assert.True(t, jsonobj.Collides("ErrorCode", "ErrorCode"))
	assert.False(t, jsonobj.Collides("MsgBody", "ActionStatus", "ErrorCode"))
}
