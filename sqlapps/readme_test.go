package sqlapps_test

import (
	"context"
	"database/sql"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/sqlapps"
	"github.com/imcallback/callback/sqlapps/sqlite"
	"github.com/imcallback/callback/tencent"
)

// readmeSQLApps is the README's "From a database" block, quoted verbatim
// (readme_test.go at the module root checks the quote).
func readmeSQLApps(ctx context.Context, out *readmeOut) error {
	db, err := sqlite.Open("apps.db") // or sql.Open("pgx", dsn), sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	store, err := sqlapps.New(db, sqlapps.Options{}) // Dialect: sqlapps.Postgres for $1 placeholders
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil { // creates or upgrades the schema; safe at every start
		return err
	}
	err = store.Set(ctx, sqlapps.App{ID: 1400000000, Endpoint: callback.Endpoint{
		URL: "https://app.example/im/callback", Protocol: callback.Tencent, Secret: "token",
		Commands: map[string]callback.Rule{tencent.C2CBeforeSendMsg: {FailClosed: true}},
	}})
	if err != nil {
		return err
	}
	// The SSRF guard refuses loopback and private addresses: an App backend on
	// 127.0.0.1 (while trying this out) then fails open with ErrForbiddenAddress.
	// Leave SSRFGuard nil for such a local test, or list its network in Allow.
	d, err := callback.New(callback.Config{Resolver: store, SSRFGuard: &callback.SSRFGuard{}})
	if err != nil {
		return err
	}
	out.d, out.db = d, db
	return nil
}

// readmeOut is what the README's block leaves open.
type readmeOut struct {
	d  *callback.Dispatcher
	db *sql.DB
}

func TestREADMESQLApps(t *testing.T) {
	t.Chdir(t.TempDir()) // the block opens apps.db in the working directory
	ctx := context.Background()
	var out readmeOut
	require.NoError(t, readmeSQLApps(ctx, &out))
	defer out.db.Close()
	defer out.d.Close(ctx)
	ep, err := out.d.Endpoint(ctx, 1400000000)
	require.NoError(t, err)
	assert.Equal(t, callback.Tencent, ep.Protocol, "the app set in the block")
	assert.Equal(t, "https://app.example/im/callback", ep.URL)
}

// The README's schema is sqlapps.Schema, its comments aside.
func TestREADMESchema(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	m := regexp.MustCompile("(?ms)^```sql\n(.*?)^```\n").FindSubmatch(readme)
	require.NotNil(t, m, "the README's sql block")
	comment := regexp.MustCompile(`[ \t]*--.*`)
	got := strings.TrimSpace(comment.ReplaceAllString(string(m[1]), ""))
	want := strings.ReplaceAll(sqlapps.Schema, "IF NOT EXISTS ", "")
	assert.Equal(t, want, got, "the README's schema must be sqlapps.Schema")
}
