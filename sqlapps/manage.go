package sqlapps

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/imcallback/callback"
)

// App is one app's row and its command rules: the management view of what
// Resolve returns.
type App struct {
	ID       int
	Endpoint callback.Endpoint
}

// Get reads app appID from the database, bypassing the cache, with its
// secret decrypted (Options.Decrypt). For an app without a row it returns
// an error wrapping callback.ErrUnknownApp.
func (s *Store) Get(ctx context.Context, appID int) (App, error) {
	apps, err := s.read(ctx, s.db, s.selectApp, appID)
	if err != nil {
		return App{}, fmt.Errorf("sqlapps: app %d: %w", appID, err)
	}
	if len(apps) == 0 {
		return App{}, fmt.Errorf("sqlapps: app %d: %w", appID, callback.ErrUnknownApp)
	}
	a := apps[0]
	if err := s.open(ctx, a.ID, &a.Endpoint, false); err != nil {
		return App{}, err
	}
	return a, nil
}

// List reads every app from the database, ordered by ID, bypassing the
// cache, with secrets decrypted (Options.Decrypt). A tool that prints them
// should print whether a secret is set, never the secret.
func (s *Store) List(ctx context.Context) ([]App, error) {
	apps, err := s.read(ctx, s.db, s.selectApps)
	if err != nil {
		return nil, fmt.Errorf("sqlapps: listing apps: %w", err)
	}
	for i := range apps {
		if err := s.open(ctx, apps[i].ID, &apps[i].Endpoint, false); err != nil {
			return nil, err
		}
	}
	return apps, nil
}

// Set creates or replaces app a: its row and all its command rules, in one
// transaction, then drops it from this Store's cache. It returns an error
// wrapping callback.ErrInvalidConfig, and writes nothing, for an endpoint
// the Dispatcher could not use (see callback.Endpoint.Validate: a command
// name that is not printable also wraps callback.ErrInvalidCommand), a
// timeout that is not a whole number of milliseconds, text some supported
// database could not store (not UTF-8, a NUL, a command name longer than
// 191 characters), or a URL with credentials (user:password@) without
// Options.Encrypt. The secret is stored as given, or as Options.Encrypt
// makes it; URL credentials only as Options.Encrypt makes them. Each
// value is encrypted behind a label naming its field (see ErrSealMismatch).
func (s *Store) Set(ctx context.Context, a App) error {
	ep := a.Endpoint
	if err := ep.Validate(); err != nil {
		return fmt.Errorf("sqlapps: app %d: %w", a.ID, err)
	}
	if err := wholeMillis(ep.Timeout); err != nil {
		return fmt.Errorf("sqlapps: app %d: Timeout %w", a.ID, err)
	}
	for cmd, r := range ep.Commands {
		if err := wholeMillis(r.Timeout); err != nil {
			return fmt.Errorf("sqlapps: app %d: command %q: Timeout %w", a.ID, cmd, err)
		}
	}
	protocol, err := ep.Protocol.MarshalText()
	if err != nil {
		return fmt.Errorf("sqlapps: app %d: %w", a.ID, err)
	}
	storedURL, err := s.seal(ctx, a.ID, ep.URL)
	if err != nil {
		return err
	}
	secret, err := s.sealSecret(ctx, a.ID, ep.Secret)
	if err != nil {
		return err
	}
	if err := checkText(ep, secret); err != nil {
		return fmt.Errorf("sqlapps: app %d: %w", a.ID, err)
	}

	err = s.inTx(ctx, func(tx *sql.Tx) error {
		// The app's row first, by an upsert that locks it: concurrent
		// Sets and Deletes of the app then take turns (a delete and an
		// insert deadlock or collide on PostgreSQL and MySQL).
		if _, err := tx.ExecContext(ctx, s.upsertApp, a.ID, storedURL, string(protocol), secret, ep.Timeout.Milliseconds()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.deleteCommands, a.ID); err != nil {
			return err
		}
		for cmd, r := range ep.Commands {
			if _, err := tx.ExecContext(ctx, s.insertCommand, a.ID, cmd, r.Disabled, r.FailClosed, r.Timeout.Milliseconds(), r.Shadow); err != nil {
				return err
			}
		}
		return nil
	})
	s.Invalidate(a.ID)
	if err != nil {
		return fmt.Errorf("sqlapps: setting app %d: %w", a.ID, err)
	}
	return nil
}

// Reseal writes app appID's sealed values (its secret, its URL's
// credentials) again, each encrypted behind its field's label, as Set
// does. It is the migration of rows written by v0.1.0, which sealed them
// without labels: their URL credentials do not resolve until resealed
// (ErrSealMismatch); their secrets still do.
//
// Reseal trusts the row as it is: it opens unlabelled URL credentials as
// URL credentials, which is what a sealed secret moved into the URL by
// someone who can write the table would be taken for. Run it once after
// upgrading, on a table nobody could have written since, never as a
// routine. It needs both Options.Encrypt and Options.Decrypt.
func (s *Store) Reseal(ctx context.Context, appID int) error {
	if s.opts.Encrypt == nil || s.opts.Decrypt == nil {
		return fmt.Errorf("sqlapps: app %d: Reseal needs Options.Encrypt and Options.Decrypt: %w", appID, callback.ErrInvalidConfig)
	}
	apps, err := s.read(ctx, s.db, s.selectApp, appID)
	if err != nil {
		return fmt.Errorf("sqlapps: app %d: %w", appID, err)
	}
	if len(apps) == 0 {
		return fmt.Errorf("sqlapps: app %d: %w", appID, callback.ErrUnknownApp)
	}
	a := apps[0]
	if err := s.open(ctx, a.ID, &a.Endpoint, true); err != nil {
		return err
	}
	return s.Set(ctx, a)
}

// SetDisabled disables app appID (disabled true) or enables it again, then
// drops it from this Store's cache: Resolve returns its Endpoint with
// Disabled set, so a Dispatcher sends it nothing (Before fails open, After
// dead-letters, with callback.ErrEndpointDisabled), on every node once
// their caches (Options.TTL) have expired. It returns an error wrapping
// callback.ErrUnknownApp if there is no such app. Set keeps an app's
// disabled state.
func (s *Store) SetDisabled(ctx context.Context, appID int, disabled bool) error {
	res, err := s.db.ExecContext(ctx, s.setDisabled, disabled, appID)
	s.Invalidate(appID)
	if err != nil {
		return fmt.Errorf("sqlapps: app %d: %w", appID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlapps: app %d: %w", appID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlapps: app %d: %w", appID, callback.ErrUnknownApp)
	}
	return nil
}

// Delete removes app appID and its command rules, then drops it from this
// Store's cache. It returns an error wrapping callback.ErrUnknownApp if
// there was no such app.
func (s *Store) Delete(ctx context.Context, appID int) error {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The app's row first, as Set locks it first.
		res, err := tx.ExecContext(ctx, s.deleteApp, appID)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			// No row: nothing of ours to delete. Deleting the commands
			// anyway would be wrong: under PostgreSQL's READ COMMITTED and
			// MySQL's locking reads this next statement sees a Set that
			// committed since the first, whose app row the DELETE did not
			// see, and would strip that app of its rules.
			return err
		}
		// The foreign key's ON DELETE CASCADE did it, unless the database
		// does not enforce it (SQLite without foreign_keys). The app's row
		// is locked by the DELETE until commit, so no Set of it can come
		// between.
		_, err = tx.ExecContext(ctx, s.deleteCommands, appID)
		return err
	})
	s.Invalidate(appID)
	switch {
	case err != nil:
		return fmt.Errorf("sqlapps: deleting app %d: %w", appID, err)
	case n == 0:
		return fmt.Errorf("sqlapps: app %d: %w", appID, callback.ErrUnknownApp)
	}
	return nil
}

// inTx runs fn in a transaction and commits it if fn returns nil.
// A transaction the database chose as a deadlock's victim (or failed to
// serialize) is run again, a few times (see retryConflicts).
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return retryConflicts(ctx, func() error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit()
	})
}

// read runs query, one of the selects of apps joined with their commands,
// and gathers its rows into apps, secrets as stored.
func (s *Store) read(ctx context.Context, db queryer, query string, args ...any) ([]App, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var apps []App
	for rows.Next() {
		var (
			id                   int
			url, secret          string
			protocol             string
			timeoutMS            int64
			appDisabled          bool
			command              sql.NullString
			disabled, failClosed sql.NullBool
			shadow               sql.NullBool
			ruleMS               sql.NullInt64
		)
		if err := rows.Scan(&id, &url, &protocol, &secret, &timeoutMS, &appDisabled, &command, &disabled, &failClosed, &ruleMS, &shadow); err != nil {
			return nil, err
		}
		if len(apps) == 0 || apps[len(apps)-1].ID != id {
			a := App{ID: id, Endpoint: callback.Endpoint{URL: url, Secret: secret, Timeout: time.Duration(timeoutMS) * time.Millisecond, Disabled: appDisabled}}
			if err := a.Endpoint.Protocol.UnmarshalText([]byte(protocol)); err != nil {
				return nil, fmt.Errorf("app %d: %w", id, err)
			}
			apps = append(apps, a)
		}
		if command.Valid {
			a := &apps[len(apps)-1]
			if a.Endpoint.Commands == nil {
				a.Endpoint.Commands = make(map[string]callback.Rule)
			}
			a.Endpoint.Commands[command.String] = callback.Rule{
				Disabled:   disabled.Bool,
				FailClosed: failClosed.Bool,
				Timeout:    time.Duration(ruleMS.Int64) * time.Millisecond,
				Shadow:     shadow.Bool,
			}
		}
	}
	return apps, rows.Err()
}

// wholeMillis rejects a duration the schema cannot store.
func wholeMillis(d time.Duration) error {
	if d%time.Millisecond != 0 {
		return fmt.Errorf("%v is not a whole number of milliseconds: %w", d, callback.ErrInvalidConfig)
	}
	return nil
}
