package sqlapps_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/dbtest"
	"github.com/imcallback/callback/sqlapps"
)

// URL credentials are a secret: stored only encrypted, refused without
// Encrypt, and sent as basic auth once decrypted.
func TestURLCredentialsAreASecret(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		ctx := context.Background()
		var authed atomic.Int64
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if user, pass, ok := r.BasicAuth(); ok && user == "ops" && pass == "hunter2 /:@" {
				authed.Add(1)
			}
			_, _ = io.WriteString(w, `{"code":200}`)
		}))
		t.Cleanup(backend.Close)
		withCreds := strings.Replace(backend.URL, "http://", "http://ops:hunter2%20%2F%3A%40@", 1) + "/cb?x=1"

		plain, _, _ := newStore(t, b, sqlapps.Options{})
		err := plain.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: withCreds}})
		require.ErrorIs(t, err, callback.ErrInvalidConfig, "no Encrypt: refused")
		assert.NotContains(t, err.Error(), "hunter2")
		_, err = plain.Get(ctx, 1)
		assert.ErrorIs(t, err, callback.ErrUnknownApp, "nothing was written")

		g := newGCM(t)
		s, db, _ := newStore(t, b, sqlapps.Options{Encrypt: g.encrypt, Decrypt: g.decrypt})
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: withCreds}}))
		var stored string
		require.NoError(t, db.QueryRow(`SELECT url FROM imcallback_apps WHERE app_id = 1`).Scan(&stored))
		assert.NotContains(t, stored, "hunter2", "credentials at rest")
		assert.NotContains(t, stored, "ops", "the user name too")
		assert.Contains(t, stored, strings.TrimPrefix(backend.URL, "http://"), "the host stays readable")
		assert.True(t, strings.HasSuffix(stored, "/cb?x=1"), stored)

		got, err := s.Get(ctx, 1)
		require.NoError(t, err)
		assert.Equal(t, withCreds, got.Endpoint.URL, "Get decrypts")
		apps, err := s.List(ctx)
		require.NoError(t, err)
		assert.Equal(t, withCreds, apps[0].Endpoint.URL, "List decrypts")

		d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		defer func() { _ = d.Close(ctx) }()
		require.NoError(t, d.Before(ctx, 1, "message.send.before", []byte(`{}`)).Err)
		assert.Equal(t, int64(1), authed.Load(), "sent with the decrypted credentials")

		// A store that cannot decrypt does not send the sealed form instead.
		noKey, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect})
		require.NoError(t, err)
		_, err = noKey.Resolve(ctx, 1)
		require.ErrorIs(t, err, callback.ErrInvalidConfig)
	})
}
