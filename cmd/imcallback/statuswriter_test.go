package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The receiver bounds reading a body with http.ResponseController's read
// deadline; listen's wrapper of the ResponseWriter must let it through.
func TestStatusWriterReachesTheConnection(t *testing.T) {
	errs := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		errs <- http.NewResponseController(sw).SetReadDeadline(time.Now().Add(time.Minute))
		sw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	res, err := http.Post(srv.URL, "application/json", nil)
	require.NoError(t, err)
	res.Body.Close()
	assert.NoError(t, <-errs)
}
