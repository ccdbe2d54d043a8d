package answer_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/imcallback/callback/internal/answer"
)

func TestKeep(t *testing.T) {
	buf := []byte("old")
	raw := []byte(`{"code":200}`)
	answer.Keep(answer.With(context.Background(), &buf), raw)
	assert.Equal(t, `{"code":200}`, string(buf))
	raw[2] = 'X'
	assert.Equal(t, `{"code":200}`, string(buf), "a copy, not the caller's buffer")

	answer.Keep(context.Background(), []byte("ignored")) // no destination: nothing to do
	answer.Keep(answer.With(context.Background(), nil), []byte("ignored"))
}
