package sqlapps_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/internal/dbtest"
	"github.com/imcallback/callback/sqlapps"
	"github.com/imcallback/callback/tencent"
)

// attacker is a host that someone who can write the apps table (but not
// read the key) points an app at: it counts what reaches it.
type attacker struct {
	*httptest.Server
	requests atomic.Int64
	authed   atomic.Int64 // requests that carried basic auth
}

func newAttacker(t *testing.T) *attacker {
	a := &attacker{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		if _, _, ok := r.BasicAuth(); ok {
			a.authed.Add(1)
		}
		_, _ = io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)
	}))
	t.Cleanup(a.Close)
	return a
}

// exec runs q, with ? placeholders, on b's database.
func exec(t *testing.T, b dbtest.Backend, db *sql.DB, q string, args ...any) {
	t.Helper()
	_, err := db.Exec(sqlapps.Rebind(b.Dialect, q), args...)
	require.NoError(t, err)
}

// sealedURL is the stored form of a URL to host whose credentials are the
// sealed value sealed, as an attacker writes it.
func sealedURL(host, sealed string) string {
	u := url.URL{Scheme: "http", Host: strings.TrimPrefix(host, "http://"), Path: "/", User: url.UserPassword("imcallback-encrypted", sealed)}
	return u.String()
}

// Attack 5 of issue 25: with the README's AES-GCM Encrypt bound to the app
// ID, someone who can write the table but not read the key moves app 1's
// sealed secret into app 1's URL credentials, at their own host. The
// seed sent the decrypted token there as basic auth; now the app does not
// resolve and nothing reaches any host.
func TestSealedSecretIsNotURLCredentials(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		ctx := context.Background()
		const token = "tencent-token-PLAINTEXT"
		backend := newApp(t, token)
		evil := newAttacker(t)
		g := newGCM(t)
		s, db, _ := newStore(t, b, sqlapps.Options{Encrypt: g.encrypt, Decrypt: g.decrypt, TTL: -1})
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: backend.URL, Protocol: callback.Tencent, Secret: token}}))

		var sealedSecret string
		require.NoError(t, db.QueryRow(`SELECT secret FROM imcallback_apps WHERE app_id = 1`).Scan(&sealedSecret))
		exec(t, b, db, `UPDATE imcallback_apps SET url = ? WHERE app_id = 1`, sealedURL(evil.URL, sealedSecret))

		d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		defer func() { _ = d.Close(ctx) }()
		r := d.Before(ctx, 1, tencent.C2CBeforeSendMsg, []byte(`{}`))
		assert.Equal(t, int64(0), evil.authed.Load(), "the plaintext token was sent as basic auth to the attacker's host")
		assert.Equal(t, int64(0), evil.requests.Load()+backend.calls.Load(), "nothing reaches any host")
		require.Error(t, r.Err)
		assert.ErrorIs(t, r.Err, sqlapps.ErrSealMismatch)
		assert.ErrorIs(t, r.Err, callback.ErrResolve)
		assert.NotContains(t, r.Err.Error(), "PLAINTEXT")
		err = d.After(ctx, 1, tencent.C2CAfterSendMsg, []byte(`{}`))
		assert.ErrorIs(t, err, sqlapps.ErrSealMismatch, "After: nothing queued")
		_, err = s.Get(ctx, 1)
		assert.ErrorIs(t, err, sqlapps.ErrSealMismatch, "Get")

		// The other way: sealed URL credentials moved into the secret.
		withCreds := strings.Replace(backend.URL, "http://", "http://ops:hunter2@", 1) + "/cb"
		require.NoError(t, s.Set(ctx, sqlapps.App{ID: 2, Endpoint: callback.Endpoint{URL: withCreds, Protocol: callback.Tencent, Secret: token}}))
		var stored string
		require.NoError(t, db.QueryRow(`SELECT url FROM imcallback_apps WHERE app_id = 2`).Scan(&stored))
		u, err := url.Parse(stored)
		require.NoError(t, err)
		sealedCreds, _ := u.User.Password()
		exec(t, b, db, `UPDATE imcallback_apps SET secret = ?, url = ? WHERE app_id = 2`, sealedCreds, evil.URL)
		_, err = s.Resolve(ctx, 2)
		assert.ErrorIs(t, err, sqlapps.ErrSealMismatch, "credentials do not open as a secret")
		assert.Equal(t, int64(0), evil.requests.Load())
	})
}

// Decrypted credentials are escaped back into the URL: whatever they hold,
// the request goes to the stored host.
func TestDecryptedCredentialsKeepTheHost(t *testing.T) {
	ctx := context.Background()
	evil := newAttacker(t)
	password := "x@" + strings.TrimPrefix(evil.URL, "http://") + "/"
	var authed atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); ok && user == "ops" && pass == password {
			authed.Add(1)
		}
		_, _ = io.WriteString(w, `{"code":200}`)
	}))
	t.Cleanup(backend.Close)
	g := newGCM(t)
	s, db, _ := newStore(t, dbtest.SQLite, sqlapps.Options{Encrypt: g.encrypt, Decrypt: g.decrypt})
	// What an Encrypt could be given that url.Userinfo.String never
	// writes: the @ and / unescaped, the attacker's host between them.
	sealed, err := g.encrypt(ctx, 1, "imcallback sealed URL userinfo\nops:"+password)
	require.NoError(t, err)
	exec(t, dbtest.SQLite, db, `INSERT INTO imcallback_apps (app_id, url, protocol, secret, timeout_ms) VALUES (1, ?, 'appcommand', '', 0)`, sealedURL(backend.URL, sealed))
	ep, err := s.Resolve(ctx, 1)
	require.NoError(t, err)
	got, err := url.Parse(ep.URL)
	require.NoError(t, err)
	assert.Equal(t, strings.TrimPrefix(backend.URL, "http://"), got.Host, "the stored host")

	d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer func() { _ = d.Close(ctx) }()
	require.NoError(t, d.Before(ctx, 1, "message.send.before", []byte(`{}`)).Err)
	assert.Equal(t, int64(1), authed.Load(), "sent to the stored host with the credentials as they decrypt")
	assert.Equal(t, int64(0), evil.requests.Load())
}

// Rows sealed by v0.1.0, without labels: secrets still open; URL
// credentials do not resolve, with an error that says how to re-seal them,
// until Reseal has written them again.
func TestResealV010Rows(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		ctx := context.Background()
		const token = "tencent-token-PLAINTEXT"
		var authed atomic.Int64
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if user, pass, ok := r.BasicAuth(); ok && user == "ops" && pass == "hunter2 /:@" {
				authed.Add(1)
			}
			_, _ = io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}`)
		}))
		t.Cleanup(backend.Close)
		signed := newApp(t, token)
		g := newGCM(t)
		s, db, _ := newStore(t, b, sqlapps.Options{Encrypt: g.encrypt, Decrypt: g.decrypt})

		// As v0.1.0's Set wrote them: the values encrypted as they are.
		oldCreds, err := g.encrypt(ctx, 1, url.UserPassword("ops", "hunter2 /:@").String())
		require.NoError(t, err)
		oldSecret, err := g.encrypt(ctx, 2, token)
		require.NoError(t, err)
		exec(t, b, db, `INSERT INTO imcallback_apps (app_id, url, protocol, secret, timeout_ms) VALUES (1, ?, 'tencent', ?, 0)`, sealedURL(backend.URL, oldCreds), "")
		exec(t, b, db, `INSERT INTO imcallback_apps (app_id, url, protocol, secret, timeout_ms) VALUES (2, ?, 'tencent', ?, 0)`, signed.URL, oldSecret)

		ep, err := s.Resolve(ctx, 2)
		require.NoError(t, err, "a v0.1.0 secret still opens")
		assert.Equal(t, token, ep.Secret)

		_, err = s.Resolve(ctx, 1)
		require.ErrorIs(t, err, sqlapps.ErrSealMismatch, "v0.1.0 URL credentials do not")
		assert.ErrorIs(t, err, callback.ErrInvalidConfig)
		assert.Contains(t, err.Error(), "Reseal", "the error says how to re-seal them")
		assert.NotContains(t, err.Error(), "hunter2")

		noKey, err := sqlapps.New(db, sqlapps.Options{Dialect: b.Dialect, Decrypt: g.decrypt})
		require.NoError(t, err)
		assert.ErrorIs(t, noKey.Reseal(ctx, 1), callback.ErrInvalidConfig, "Reseal needs Encrypt")
		assert.ErrorIs(t, s.Reseal(ctx, 9), callback.ErrUnknownApp)
		require.NoError(t, s.Reseal(ctx, 1))
		require.NoError(t, s.Reseal(ctx, 2))

		d, err := callback.New(callback.Config{Resolver: s, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		defer func() { _ = d.Close(ctx) }()
		require.NoError(t, d.Before(ctx, 1, tencent.C2CBeforeSendMsg, []byte(`{}`)).Err)
		assert.Equal(t, int64(1), authed.Load(), "resealed credentials are sent")
		require.NoError(t, d.Before(ctx, 2, tencent.C2CBeforeSendMsg, []byte(`{}`)).Err)
		assert.Equal(t, int64(1), signed.signed.Load(), "the resealed secret signs")

		// Resealed, the secret no longer opens as URL credentials.
		var sealedSecret string
		require.NoError(t, db.QueryRow(`SELECT secret FROM imcallback_apps WHERE app_id = 2`).Scan(&sealedSecret))
		assert.NotEqual(t, oldSecret, sealedSecret)
		exec(t, b, db, `UPDATE imcallback_apps SET url = ? WHERE app_id = 2`, sealedURL(backend.URL, sealedSecret))
		s.Invalidate(2)
		_, err = s.Resolve(ctx, 2)
		assert.ErrorIs(t, err, sqlapps.ErrSealMismatch)
	})
}

// Set refuses a command name that is not printable (issue 25, attack 6):
// it would reach the terminal of whoever lists the apps.
func TestSetRefusesUnprintableCommands(t *testing.T) {
	eachDB(t, func(t *testing.T, b dbtest.Backend) {
		ctx := context.Background()
		s, _, _ := newStore(t, b, sqlapps.Options{})
		for _, cmd := range []string{"msg\x1b[2J", "\x07", "msg\u009b31m", "msg\u202etxt", "msg\u2067"} {
			err := s.Set(ctx, sqlapps.App{ID: 1, Endpoint: callback.Endpoint{URL: "http://x/cb", Commands: map[string]callback.Rule{cmd: {}}}})
			require.ErrorIs(t, err, callback.ErrInvalidCommand, "%q", cmd)
			assert.ErrorIs(t, err, callback.ErrInvalidConfig)
		}
		_, err := s.Get(ctx, 1)
		assert.ErrorIs(t, err, callback.ErrUnknownApp, "nothing was written")
	})
}
