// Package sqlapps keeps each app's callback endpoint (URL, protocol,
// secret, timeout and per-command rules) in a SQL database, and resolves it
// for a callback.Dispatcher through a read-through cache:
//
//	db, err := sqlite.Open("apps.db") // or sql.Open("pgx", dsn), ...
//	store, err := sqlapps.New(db, sqlapps.Options{})
//	err = store.Migrate(ctx)
//	d, err := callback.New(callback.Config{Resolver: store, SSRFGuard: &callback.SSRFGuard{}})
//
// It works with any database/sql driver; Options.Dialect picks the
// placeholders and the few statements that differ (an upsert, Migrate's
// lock). The schema (see Schema) is the same SQL on SQLite, PostgreSQL and
// MySQL (plus MySQLText on MySQL). Tests run it against a real SQLite file through
// the pure-Go modernc.org/sqlite driver (see the sqlite sub-package) and
// real MariaDB and PostgreSQL servers (github.com/go-sql-driver/mysql,
// github.com/jackc/pgx/v5/stdlib).
//
// The cache keeps each app's endpoint for Options.TTL, so Before does not
// query the database on every message; Set and Delete through a Store
// invalidate its cache at once, and other processes see a change within
// the TTL (or call Invalidate when told of it).
//
// Secrets are stored as given by default: anyone who can read the table
// can sign callbacks as the IM server. Options.Encrypt and Options.Decrypt
// let secrets be encrypted at rest (with a KMS or a key the database does
// not hold); decrypted secrets then live only in the process's memory, in
// the cache.
//
// Credentials in a URL (https://user:password@host/...) are a secret too:
// Set stores them only encrypted, with Options.Encrypt, in the URL's user
// information under the user name "imcallback-encrypted"; without Encrypt
// it refuses them. The rest of the URL stays readable in the table.
//
// Each sealed value is bound to its field: Set encrypts it behind a label
// that names the field (the secret, or the URL's credentials) and Resolve
// checks that label after Decrypt, so that someone who can write the table
// but not read the key cannot have a sealed secret opened as URL
// credentials (and sent as basic auth to a host of their choosing), nor
// the other way round. Decrypted credentials are escaped into the URL, and
// a URL whose host or scheme they would change does not resolve. See
// ErrSealMismatch and Store.Reseal.
package sqlapps

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/imcallback/callback"
)

// Defaults applied by New to the zero values of Options.
const (
	defaultTTL          = 30 * time.Second
	defaultQueryTimeout = time.Second
	// maxRetryStale bounds how long a stale endpoint is served after a
	// failed refresh before the database is asked again.
	maxRetryStale = time.Second
)

// Options configures a Store. Zero values mean the documented defaults.
type Options struct {
	// Dialect is the database's SQL dialect. The zero value is SQLite.
	Dialect Dialect

	// TTL is how long Resolve serves an app's endpoint (or the fact that
	// the app is unknown) from memory before it reads it again. 0 means
	// 30 s; a negative value turns the cache off: every Resolve queries.
	TTL time.Duration

	// QueryTimeout bounds the query Resolve makes on a cache miss, so a
	// database that hangs costs a Before call at most this. 0 means 1 s.
	QueryTimeout time.Duration

	// Decrypt, if set, turns a secret as stored into the secret to sign
	// with, each time an app is read from the database (not on cache
	// hits). Its error fails the resolution of that app.
	Decrypt SecretFunc

	// Encrypt, if set, turns a secret into what Set stores. It should be
	// Decrypt's inverse. The user information of a URL with credentials
	// ("user:password", escaped) goes through both too; without Encrypt,
	// Set refuses such a URL. What Encrypt is given starts with a label
	// naming the field, which Decrypt must give back unchanged.
	Encrypt SecretFunc
}

// SecretFunc transforms a sealed value of app appID (for example encrypts
// or decrypts it with a key held outside the database). It must be safe
// for concurrent use. Its error must not contain the value.
//
// Encrypt must be authenticated encryption (an AEAD such as AES-GCM) bound
// to appID, for example as associated data: then a value moved to another
// app's row does not decrypt, and one moved to another field of the same
// row decrypts to the wrong field's label, which the Store refuses (see
// ErrSealMismatch). The label travels inside the value, so the Store
// checks it whatever the key or the service behind the functions.
type SecretFunc func(ctx context.Context, appID int, secret string) (string, error)

// ErrSealMismatch means a sealed value of an app's row does not open for
// the field it is in: a sealed secret in the URL's credentials or sealed
// credentials in the secret (someone moved them), URL credentials sealed
// by a release before the labels (see Store.Reseal), or credentials that
// would change the URL's host or scheme. The app does not resolve and
// nothing is sent to it. Its errors wrap callback.ErrInvalidConfig too.
var ErrSealMismatch = errors.New("sqlapps: sealed value does not open for its field")

// The labels Set puts before each value it encrypts, naming its field;
// open checks them after Decrypt. A newline is in neither a valid secret
// nor escaped user information, so no value sealed without a label (by a
// release before them) starts with one.
const (
	labelSecret   = "imcallback sealed secret\n"
	labelUserinfo = "imcallback sealed URL userinfo\n"
)

// A Store reads and writes apps' endpoints in a database and implements
// callback.Resolver with a read-through cache. A Store is safe for
// concurrent use. It does not own db: the caller closes it.
type Store struct {
	db      *sql.DB
	dialect Dialect
	opts    Options
	now     func() time.Time // a test seam

	// Queries, rewritten for the dialect once.
	selectApp, selectApps, deleteCommands, deleteApp, upsertApp, insertCommand, setDisabled string

	loads singleflight.Group // one query per app at a time, shared by its callers
	gen   atomic.Uint64      // bumped by every invalidation

	mu    sync.RWMutex // guards cache
	cache map[int]*entry
}

// entry is what the cache knows of one app: its endpoint or that it is
// unknown (err), until expires.
type entry struct {
	ep      callback.Endpoint
	err     error
	expires time.Time
}

// New returns a Store on db. It does not touch the database: call Migrate
// to create the schema.
func New(db *sql.DB, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("sqlapps: db is nil")
	}
	if opts.Dialect < SQLite || opts.Dialect > MySQL {
		return nil, fmt.Errorf("sqlapps: unknown Dialect %d", int(opts.Dialect))
	}
	if opts.QueryTimeout < 0 {
		return nil, errors.New("sqlapps: QueryTimeout is negative")
	}
	if opts.TTL == 0 {
		opts.TTL = defaultTTL
	}
	if opts.QueryTimeout == 0 {
		opts.QueryTimeout = defaultQueryTimeout
	}
	s := &Store{db: db, dialect: opts.Dialect, opts: opts, now: time.Now, cache: make(map[int]*entry)}
	const columns = `SELECT a.app_id, a.url, a.protocol, a.secret, a.timeout_ms, a.disabled, c.command, c.disabled, c.fail_closed, c.timeout_ms, c.shadow
FROM imcallback_apps a LEFT JOIN imcallback_app_commands c ON c.app_id = a.app_id`
	s.selectApp = s.q(columns + ` WHERE a.app_id = ?`)
	s.selectApps = s.q(columns + ` ORDER BY a.app_id, c.command`)
	s.deleteCommands = s.q(`DELETE FROM imcallback_app_commands WHERE app_id = ?`)
	s.deleteApp = s.q(`DELETE FROM imcallback_apps WHERE app_id = ?`)
	s.setDisabled = s.q(`UPDATE imcallback_apps SET disabled = ? WHERE app_id = ?`)
	s.upsertApp = s.q(upsertApp(opts.Dialect))
	s.insertCommand = s.q(`INSERT INTO imcallback_app_commands (app_id, command, disabled, fail_closed, timeout_ms, shadow) VALUES (?, ?, ?, ?, ?, ?)`)
	return s, nil
}

// Resolve returns app appID's endpoint, from the cache while it is fresh,
// else from the database. For an app without a row it returns an error
// wrapping callback.ErrUnknownApp (cached like an endpoint, so unknown apps
// do not query the database on every call either). When the database
// fails, it serves the endpoint it last read, if any, and asks the
// database again at most once a second; otherwise it returns the
// database's error. Callers waiting for the same app share one query,
// bounded by Options.QueryTimeout; each returns when its ctx ends.
//
// The returned Endpoint's Commands map is shared: do not change it.
func (s *Store) Resolve(ctx context.Context, appID int) (callback.Endpoint, error) {
	s.mu.RLock()
	e := s.cache[appID]
	s.mu.RUnlock()
	if e != nil && s.now().Before(e.expires) {
		return e.ep, e.err
	}
	gen := s.gen.Load()
	ch := s.loads.DoChan(strconv.Itoa(appID)+"@"+strconv.FormatUint(gen, 10), func() (any, error) {
		return s.refresh(ctx, appID, gen, e)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return callback.Endpoint{}, r.Err
		}
		e := r.Val.(*entry)
		return e.ep, e.err
	case <-ctx.Done():
		return callback.Endpoint{}, fmt.Errorf("sqlapps: app %d: %w", appID, ctx.Err())
	}
}

// refresh reads appID from the database and caches the result, unless an
// invalidation happened since gen. stale is the expired entry, if any,
// served when the database fails.
func (s *Store) refresh(ctx context.Context, appID int, gen uint64, stale *entry) (*entry, error) {
	// The query is shared by every caller waiting for it: it must not end
	// with the first caller's ctx, only with the query timeout.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.QueryTimeout)
	defer cancel()
	apps, err := s.read(qctx, s.db, s.selectApp, appID)
	if err != nil {
		if stale == nil {
			return nil, fmt.Errorf("sqlapps: app %d: %w", appID, err)
		}
		e := *stale
		e.expires = s.now().Add(min(s.opts.TTL, maxRetryStale))
		s.store(appID, gen, &e)
		return &e, nil
	}
	e := &entry{expires: s.now().Add(s.opts.TTL)}
	if len(apps) == 0 {
		e.err = fmt.Errorf("sqlapps: app %d: %w", appID, callback.ErrUnknownApp)
	} else {
		e.ep = apps[0].Endpoint
		if err = s.open(qctx, appID, &e.ep, false); err != nil {
			e.err = err
		}
	}
	s.store(appID, gen, e)
	return e, nil
}

// store caches e unless an invalidation happened since gen, or the cache
// is off.
func (s *Store) store(appID int, gen uint64, e *entry) {
	if s.opts.TTL < 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen.Load() == gen {
		s.cache[appID] = e
	}
}

// Invalidate drops app appID from the cache: the next Resolve reads it from
// the database.
func (s *Store) Invalidate(appID int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	delete(s.cache, appID)
}

// InvalidateAll empties the cache.
func (s *Store) InvalidateAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	clear(s.cache)
}

// encryptedUser is the user name of a stored URL whose user information
// is encrypted: its password is what Options.Encrypt made of it.
const encryptedUser = "imcallback-encrypted"

// open turns a stored endpoint into the one to call: its secret and its
// URL's credentials decrypted with Options.Decrypt and checked to be
// sealed for their field. legacy also opens values sealed without a
// label, as URL credentials (Reseal); a secret without one is opened as a
// secret either way.
func (s *Store) open(ctx context.Context, appID int, ep *callback.Endpoint, legacy bool) error {
	var err error
	if ep.Secret, err = s.decrypt(ctx, appID, ep.Secret); err != nil {
		return err
	}
	if !strings.Contains(ep.URL, encryptedUser+":") {
		return nil
	}
	u, err := url.Parse(ep.URL)
	if err != nil || u.User == nil || u.User.Username() != encryptedUser {
		return nil // not ours; the Dispatcher checks the URL
	}
	if s.opts.Decrypt == nil {
		return fmt.Errorf("sqlapps: app %d: its URL credentials are encrypted and Options.Decrypt is not set: %w", appID, callback.ErrInvalidConfig)
	}
	sealed, _ := u.User.Password()
	plain, err := s.opts.Decrypt(ctx, appID, sealed)
	if err != nil {
		return fmt.Errorf("sqlapps: app %d: decrypting its URL credentials: %w", appID, err)
	}
	userinfo, ok := strings.CutPrefix(plain, labelUserinfo)
	switch {
	case ok:
	case strings.HasPrefix(plain, labelSecret):
		return sealError(appID, "its URL credentials hold a sealed secret (moved from the secret column)")
	case !legacy:
		return sealError(appID, "its URL credentials were sealed without their field's label (by v0.1.0): re-seal them with Store.Reseal, or Set the app again with the plain URL")
	default:
		userinfo = plain
	}
	user, err := parseUserinfo(userinfo)
	if err != nil {
		return fmt.Errorf("sqlapps: app %d: its URL credentials do not decrypt to user information: %w", appID, callback.ErrInvalidConfig)
	}
	scheme, host := u.Scheme, u.Host
	u.User = user
	plainURL := u.String()
	if v, err := url.Parse(plainURL); err != nil || v.Scheme != scheme || v.Host != host {
		return sealError(appID, "its decrypted URL credentials would change the URL's host or scheme")
	}
	ep.URL = plainURL
	return nil
}

// sealError is app appID's error for a value that does not open for its
// field.
func sealError(appID int, why string) error {
	return fmt.Errorf("sqlapps: app %d: %s: %w (%w)", appID, why, ErrSealMismatch, callback.ErrInvalidConfig)
}

// parseUserinfo reads user information as url.Userinfo.String writes it
// ("user:password", each part escaped) into a Userinfo that escapes it
// again, so no character of it can end the user information early.
func parseUserinfo(s string) (*url.Userinfo, error) {
	name, password, hasPassword := strings.Cut(s, ":")
	name, err := url.PathUnescape(name)
	if err != nil {
		return nil, err
	}
	if !hasPassword {
		return url.User(name), nil
	}
	if password, err = url.PathUnescape(password); err != nil {
		return nil, err
	}
	return url.UserPassword(name, password), nil
}

// seal returns the URL Set stores for raw: as given without credentials,
// with them encrypted by Options.Encrypt behind their field's label, or an
// error if there is no Encrypt.
func (s *Store) seal(ctx context.Context, appID int, raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw, nil // Validate has checked it parses
	}
	if s.opts.Encrypt == nil {
		return "", fmt.Errorf("sqlapps: app %d: URL carries credentials, which are stored only encrypted: set Options.Encrypt: %w", appID, callback.ErrInvalidConfig)
	}
	sealed, err := s.opts.Encrypt(ctx, appID, labelUserinfo+u.User.String())
	if err != nil {
		return "", fmt.Errorf("sqlapps: app %d: encrypting its URL credentials: %w", appID, err)
	}
	u.User = url.UserPassword(encryptedUser, sealed)
	return u.String(), nil
}

// sealSecret returns the secret Set stores: as given, or encrypted by
// Options.Encrypt behind its field's label.
func (s *Store) sealSecret(ctx context.Context, appID int, secret string) (string, error) {
	if s.opts.Encrypt == nil || secret == "" {
		return secret, nil
	}
	sealed, err := s.opts.Encrypt(ctx, appID, labelSecret+secret)
	if err != nil {
		return "", fmt.Errorf("sqlapps: app %d: encrypting its secret: %w", appID, err)
	}
	return sealed, nil
}

// decrypt applies Options.Decrypt to a stored secret and checks its
// label. A secret sealed without one, by a release before the labels, is
// opened as it is: it can only have been sealed as a secret or as URL
// credentials, and the latter, used as a signing key, are never sent.
func (s *Store) decrypt(ctx context.Context, appID int, secret string) (string, error) {
	if s.opts.Decrypt == nil || secret == "" {
		return secret, nil
	}
	plain, err := s.opts.Decrypt(ctx, appID, secret)
	if err != nil {
		return "", fmt.Errorf("sqlapps: app %d: decrypting its secret: %w", appID, err)
	}
	if strings.HasPrefix(plain, labelUserinfo) {
		return "", sealError(appID, "its secret holds sealed URL credentials (moved from the URL)")
	}
	return strings.TrimPrefix(plain, labelSecret), nil
}
