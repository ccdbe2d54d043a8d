package callback_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/imcallback/callback"
)

func TestDeadLetterQuerySize(t *testing.T) {
	for limit, want := range map[int]int{-1: 100, 0: 100, 1: 1, 100: 100, 1000: 1000, 1001: 1000} {
		assert.Equal(t, want, callback.DeadLetterQuery{Limit: limit}.Size(), "Limit %d", limit)
	}
}
