package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/sqlapps"
	"github.com/imcallback/callback/sqlapps/sqlite"
)

const appsUsage = `Usage: imcallback apps list|set|delete|disable|enable [flags]

Manages the per-app callback endpoints that a Dispatcher with an sqlapps
resolver reads: each app's URL, protocol, secret, timeout and per-command
rules, in a SQLite file or a MySQL / MariaDB or PostgreSQL database (the
sqlapps schema, created or migrated if needed).

  imcallback apps set    --db apps.db --create --app 10000 --url ...   # a new file
  imcallback apps list   --db apps.db [--json]
  imcallback apps set    --db apps.db --app 10000 --url https://app.example/cb [flags]
  imcallback apps delete --db apps.db --app 10000
  imcallback apps disable --db apps.db --app 10000   # send it nothing, on every node
  imcallback apps enable  --db apps.db --app 10000

The database, for every subcommand:
  --db FILE [--create]        a SQLite file, which must exist unless --create is given
  --driver mysql --dsn DSN    MySQL 8 or MariaDB 10.5+: user:password@tcp(host:3306)/dbname
  --driver postgres --dsn DSN PostgreSQL: postgres://user:password@host:5432/dbname
For mysql and postgres, --dsn defaults to $IMCALLBACK_DSN, which keeps a
password out of the process list.

Run "imcallback apps set --help" for the flags of set. A Dispatcher's cache
picks a change up within its TTL (30 s by default). A command that the
database has not answered within a minute fails.
`

const appsSetHead = `Usage: imcallback apps set --db FILE|--driver NAME --dsn DSN --app ID --url URL [flags]

Creates or replaces app ID: its endpoint and all its command rules (rules
not given again are removed). The secret is only the one given, with
--secret or --secret-from-env NAME; with neither the app is unsigned. The endpoint is checked as the Dispatcher
would check it (URL, protocol, secret) before anything is written.

Rules are given with --rule, repeatable, as COMMAND=SETTING[,SETTING...]:
  disabled          no callback is sent for the command
  fail-closed       Before denies when the callback fails
  shadow            Before sends the callback but never enforces the answer
                    (recorded in metrics and the attempt log; fails open)
  timeout=DURATION  the command's own timeout, e.g. 500ms

Example:
  imcallback apps set --db apps.db --app 10000 --url https://app.example/callback \
    --protocol tencent --secret-from-env TOKEN --rule C2C.CallbackBeforeSendMsg=fail-closed,timeout=500ms \
    --rule State.StateChange=disabled
`

// appsTimeout bounds a whole "imcallback apps" command, so a database
// that hangs fails it rather than holding it. A variable for the tests.
var appsTimeout = time.Minute

// runApps runs "imcallback apps ...".
func runApps(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, appsTimeout)
	defer cancel()
	if len(args) == 0 {
		fmt.Fprint(stderr, appsUsage)
		return exitUsage
	}
	switch args[0] {
	case "list":
		return runAppsList(ctx, args[1:], stdout, stderr)
	case "set":
		return runAppsSet(ctx, args[1:], stdout, stderr)
	case "delete":
		return runAppsDelete(ctx, args[1:], stdout, stderr)
	case "disable", "enable":
		return runAppsDisable(ctx, args[0], args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, appsUsage)
		return exitAllow
	}
	return fail(stderr, exitUsage, "imcallback apps: unknown command %q (want list, set, delete, disable or enable; see imcallback apps --help)", args[0])
}

// storeFlags are the flags that name the database of the apps.
type storeFlags struct {
	driver appsDriver
	dsn    string
	db     string
	create bool
}

// register adds --driver, --dsn and --db to fs.
func (f *storeFlags) register(fs *flag.FlagSet) {
	f.driver = "sqlite"
	fs.Var(&f.driver, "driver", "the `database`: sqlite, mysql (MySQL 8, MariaDB 10.5+) or postgres")
	fs.StringVar(&f.dsn, "dsn", "", "the database's `DSN` for --driver mysql or postgres, default $IMCALLBACK_DSN (for sqlite, the file, as --db)")
	fs.StringVar(&f.db, "db", "", "the SQLite `file` of the apps; it must exist unless --create is given")
	fs.BoolVar(&f.create, "create", false, "create the SQLite file if it does not exist (a server database's schema is always created)")
}

// usageError is an error in the command line rather than in running it:
// exit status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// failApps reports err of command name with exit status 2 for a usage
// error and 1 otherwise.
func failApps(stderr io.Writer, name string, err error) int {
	code := exitFailure
	if errors.As(err, new(usageError)) {
		code = exitUsage
	}
	return fail(stderr, code, "imcallback apps %s: %v", name, err)
}

// appsDriver is --driver's value.
type appsDriver string

func (d *appsDriver) String() string { return string(*d) }

func (d *appsDriver) Set(v string) error {
	switch v {
	case "sqlite", "mysql", "postgres":
		*d = appsDriver(v)
		return nil
	}
	return fmt.Errorf("unknown driver %q (want sqlite, mysql or postgres)", v)
}

// open opens the database the flags name and creates or migrates the
// schema. The caller closes the returned io.Closer. Errors never carry the
// DSN, which may hold a password.
func (f *storeFlags) open(ctx context.Context) (*sqlapps.Store, io.Closer, error) {
	var (
		db      *sql.DB
		dialect = sqlapps.SQLite
		err     error
	)
	if f.driver == "sqlite" {
		path := f.db
		if path == "" {
			path = f.dsn
		}
		if path == "" {
			return nil, nil, usageError{errors.New("--db is required (the SQLite file; or --driver mysql|postgres with --dsn)")}
		}
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && !f.create {
			return nil, nil, usageError{fmt.Errorf("%s does not exist (give --create to create it)", path)}
		}
		db, err = sqlite.Open(path)
	} else {
		db, dialect, err = f.openServer()
	}
	if err != nil {
		return nil, nil, err
	}
	store, err := sqlapps.New(db, sqlapps.Options{Dialect: dialect})
	if err == nil {
		err = store.Migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return store, db, nil
}

// openServer opens the MySQL or PostgreSQL database of --dsn.
func (f *storeFlags) openServer() (*sql.DB, sqlapps.Dialect, error) {
	if f.db != "" {
		return nil, 0, usageError{fmt.Errorf("--db names a SQLite file: with --driver %s, give --dsn", f.driver)}
	}
	if f.dsn == "" {
		f.dsn = os.Getenv("IMCALLBACK_DSN")
	}
	if f.dsn == "" {
		return nil, 0, usageError{fmt.Errorf("--dsn (or $IMCALLBACK_DSN) is required with --driver %s", f.driver)}
	}
	// The drivers' messages for a bad DSN may quote it, password included.
	bad := usageError{fmt.Errorf("--dsn is not a valid %s DSN", f.driver)}
	if f.driver == "postgres" {
		cfg, err := pgx.ParseConfig(f.dsn)
		if err != nil {
			return nil, 0, bad
		}
		return sql.OpenDB(stdlib.GetConnector(*cfg)), sqlapps.Postgres, nil
	}
	cfg, err := mysql.ParseDSN(f.dsn)
	if err != nil {
		return nil, 0, bad
	}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, 0, bad
	}
	return sql.OpenDB(c), sqlapps.MySQL, nil
}

func runAppsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apps list", flag.ContinueOnError)
	var db storeFlags
	db.register(fs)
	asJSON := fs.Bool("json", false, "print JSON (secrets shown as set or not)")
	fs.Usage = usageFunc(fs, "Usage: imcallback apps list --db FILE|--driver NAME --dsn DSN [--json]\n\nLists every app's endpoint and rules. Secrets are never printed.\n", "")
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	store, closer, err := db.open(ctx)
	if err != nil {
		return failApps(stderr, "list", err)
	}
	defer closer.Close()
	apps, err := store.List(ctx)
	if err != nil {
		return fail(stderr, exitFailure, "imcallback apps list: %v", err)
	}
	if *asJSON {
		out := make([]appJSON, 0, len(apps))
		for _, a := range apps {
			out = append(out, toJSON(a))
		}
		if err := writeIndentedJSON(stdout, out); err != nil {
			return fail(stderr, exitFailure, "imcallback apps list: %v", err)
		}
		return exitAllow
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "APP\tURL\tPROTOCOL\tSECRET\tTIMEOUT\tSTATE\tRULES")
	for _, a := range apps {
		// The row's text is the database's: quoted where it holds a
		// character that is not graphic (or, in a rule's command, a space
		// that would split the column).
		j := toJSON(a)
		timeout := "default"
		if j.Timeout != "" {
			timeout = j.Timeout
		}
		rules := make([]string, 0, len(a.Endpoint.Commands))
		for cmd, r := range a.Endpoint.Commands {
			rules = append(rules, safe(cmd)+"="+formatRule(r))
		}
		slices.Sort(rules)
		if len(rules) == 0 {
			rules = append(rules, "-")
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", j.App, printable(j.URL), j.Protocol, j.Secret, timeout, appState(a), strings.Join(rules, " "))
	}
	if err := w.Flush(); err != nil {
		return fail(stderr, exitFailure, "imcallback apps list: %v", err)
	}
	return exitAllow
}

// redactURL returns raw with its user information (basic-auth credentials)
// replaced by "xxxxx", so that a printed URL carries no password; raw is
// returned as is if it has none. A URL that does not parse is not printed.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	if u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	} else {
		u.User = url.User("xxxxx") // a lone user name is often a token
	}
	return u.String()
}

// appJSON is how list shows an app: the secret only as "set" or "none",
// the URL without its credentials.
type appJSON struct {
	App      int      `json:"app"`
	URL      string   `json:"url"`
	Protocol string   `json:"protocol"`
	Secret   string   `json:"secret"`
	Timeout  string   `json:"timeout,omitempty"`
	Rules    []string `json:"rules,omitempty"`
	Disabled bool     `json:"disabled,omitempty"`
}

func toJSON(a sqlapps.App) appJSON {
	j := appJSON{App: a.ID, URL: redactURL(a.Endpoint.URL), Protocol: a.Endpoint.Protocol.String(), Secret: "none", Disabled: a.Endpoint.Disabled}
	if a.Endpoint.Secret != "" {
		j.Secret = "set"
	}
	if a.Endpoint.Timeout > 0 {
		j.Timeout = a.Endpoint.Timeout.String()
	}
	for cmd, r := range a.Endpoint.Commands {
		j.Rules = append(j.Rules, cmd+"="+formatRule(r))
	}
	slices.Sort(j.Rules)
	return j
}

// formatRule writes r in --rule's SETTING syntax.
func formatRule(r callback.Rule) string {
	var parts []string
	if r.Disabled {
		parts = append(parts, "disabled")
	}
	if r.FailClosed {
		parts = append(parts, "fail-closed")
	}
	if r.Shadow {
		parts = append(parts, "shadow")
	}
	if r.Timeout > 0 {
		parts = append(parts, "timeout="+r.Timeout.String())
	}
	if len(parts) == 0 {
		return "enabled"
	}
	return strings.Join(parts, ",")
}

// ruleFlags collects repeated --rule flags.
type ruleFlags map[string]callback.Rule

func (r ruleFlags) String() string { return "" }

func (r ruleFlags) Set(v string) error {
	cmd, settings, ok := strings.Cut(v, "=")
	if !ok || cmd == "" {
		return fmt.Errorf("want COMMAND=SETTING[,SETTING...], got %q", v)
	}
	var rule callback.Rule
	for s := range strings.SplitSeq(settings, ",") {
		switch k, val, _ := strings.Cut(strings.TrimSpace(s), "="); k {
		case "disabled":
			rule.Disabled = true
		case "fail-closed":
			rule.FailClosed = true
		case "shadow":
			rule.Shadow = true
		case "enabled":
		case "timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return fmt.Errorf("rule %s: timeout %q is not a positive duration", cmd, val)
			}
			rule.Timeout = d
		default:
			return fmt.Errorf("rule %s: unknown setting %q (want disabled, fail-closed, shadow or timeout=DURATION)", cmd, s)
		}
	}
	if _, dup := r[cmd]; dup {
		return fmt.Errorf("rule %s given twice", cmd)
	}
	r[cmd] = rule
	return nil
}

func runAppsSet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apps set", flag.ContinueOnError)
	var db storeFlags
	db.register(fs)
	app := fs.Int("app", 0, "the app `ID`")
	var ep callback.Endpoint
	rules := ruleFlags{}
	fs.StringVar(&ep.URL, "url", "", "the app's callback `URL`")
	fs.TextVar(&ep.Protocol, "protocol", callback.AppCommand, "the app's wire `protocol`: appcommand, tencent or openim")
	fs.StringVar(&ep.Secret, "secret", "", "the app's `secret`: whsec_... for seed, the token for tencent; none: unsigned")
	secretEnv := fs.String("secret-from-env", "", "read the app's secret from the environment `variable` NAME")
	fs.DurationVar(&ep.Timeout, "timeout", 0, "the app's request timeout; 0 means the Dispatcher's")
	fs.Var(rules, "rule", "a command's rule, `COMMAND=SETTING[,SETTING...]` (repeatable; see above)")
	fs.Usage = usageFunc(fs, appsSetHead, "")
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *app == 0 {
		return fail(stderr, exitUsage, "imcallback apps set: --app is required (see imcallback apps set --help)")
	}
	if ep.URL == "" {
		return fail(stderr, exitUsage, "imcallback apps set: --url is required (see imcallback apps set --help)")
	}
	var err error
	if ep.Secret, err = secretFlag(ep.Secret, *secretEnv); err != nil {
		return fail(stderr, exitUsage, "imcallback apps set: %v", err)
	}
	if len(rules) > 0 {
		ep.Commands = rules
	}
	if err := ep.Validate(); err != nil { // before the database is touched
		return fail(stderr, exitUsage, "imcallback apps set: %v", err)
	}
	store, closer, err := db.open(ctx)
	if err != nil {
		return failApps(stderr, "set", err)
	}
	defer closer.Close()
	if err := store.Set(ctx, sqlapps.App{ID: *app, Endpoint: ep}); err != nil {
		return fail(stderr, exitFailure, "imcallback apps set: %v", err)
	}
	fmt.Fprintf(stdout, "app %d: %s (%s)\n", *app, redactURL(ep.URL), ep.Protocol)
	return exitAllow
}

func runAppsDelete(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apps delete", flag.ContinueOnError)
	var db storeFlags
	db.register(fs)
	app := fs.Int("app", 0, "the app `ID`")
	fs.Usage = usageFunc(fs, "Usage: imcallback apps delete --db FILE|--driver NAME --dsn DSN --app ID\n\nDeletes app ID and its rules. Its callbacks then fail as an unknown app's.\n", "")
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *app == 0 {
		return fail(stderr, exitUsage, "imcallback apps delete: --app is required (see imcallback apps delete --help)")
	}
	store, closer, err := db.open(ctx)
	if err != nil {
		return failApps(stderr, "delete", err)
	}
	defer closer.Close()
	if err := store.Delete(ctx, *app); err != nil {
		return fail(stderr, exitFailure, "imcallback apps delete: %v", err)
	}
	fmt.Fprintf(stdout, "app %d deleted\n", *app)
	return exitAllow
}

// appState is the STATE column of apps list.
func appState(a sqlapps.App) string {
	if a.Endpoint.Disabled {
		return "disabled"
	}
	return "enabled"
}

// runAppsDisable runs "imcallback apps disable" and "apps enable" (name).
func runAppsDisable(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apps "+name, flag.ContinueOnError)
	var db storeFlags
	db.register(fs)
	app := fs.Int("app", 0, "the app `ID`")
	help := "Disables app ID: every Dispatcher reading the database sends it nothing (Before fails open,\nAfter dead-letters, with callback.ErrEndpointDisabled) once its cache expires.\n"
	if name == "enable" {
		help = "Enables app ID again (see imcallback apps disable). Its dead letters are not sent again by it:\nreplay them.\n"
	}
	fs.Usage = usageFunc(fs, "Usage: imcallback apps "+name+" --db FILE|--driver NAME --dsn DSN --app ID\n\n"+help, "")
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *app == 0 {
		return fail(stderr, exitUsage, "imcallback apps %s: --app is required (see imcallback apps %s --help)", name, name)
	}
	store, closer, err := db.open(ctx)
	if err != nil {
		return failApps(stderr, name, err)
	}
	defer closer.Close()
	if err := store.SetDisabled(ctx, *app, name == "disable"); err != nil {
		return fail(stderr, exitFailure, "imcallback apps %s: %v", name, err)
	}
	fmt.Fprintf(stdout, "app %d %sd\n", *app, name)
	return exitAllow
}
