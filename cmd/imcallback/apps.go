package main

import (
	"context"
	"encoding/json"
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

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/sqlapps"
	"github.com/imcallback/callback/sqlapps/sqlite"
)

const appsUsage = `Usage: imcallback apps list|set|delete [flags]

Manages the per-app callback endpoints that a Dispatcher with an sqlapps
resolver reads: each app's URL, protocol, secret, timeout and per-command
rules, in a SQLite file (the sqlapps schema, created if missing).

  imcallback apps list   --db apps.db [--json]
  imcallback apps set    --db apps.db --app 10000 --url https://app.example/cb [flags]
  imcallback apps delete --db apps.db --app 10000

Run "imcallback apps set --help" for the flags of set. A Dispatcher's cache
picks a change up within its TTL (30 s by default).

The CLI carries the pure-Go SQLite driver only; for PostgreSQL or MySQL use
the same functions (sqlapps.Store's List, Set and Delete) from Go with your
driver.
`

const appsSetHead = `Usage: imcallback apps set --db FILE --app ID --url URL [flags]

Creates or replaces app ID: its endpoint and all its command rules (rules
not given again are removed). The endpoint is checked as the Dispatcher
would check it (URL, protocol, secret) before anything is written.

Rules are given with --rule, repeatable, as COMMAND=SETTING[,SETTING...]:
  disabled          no callback is sent for the command
  fail-closed       Before denies when the callback fails
  timeout=DURATION  the command's own timeout, e.g. 500ms

Example:
  imcallback apps set --db apps.db --app 10000 --url https://app.example/callback \
    --protocol tencent --secret "$TOKEN" --rule C2C.CallbackBeforeSendMsg=fail-closed,timeout=500ms \
    --rule State.StateChange=disabled
`

// runApps runs "imcallback apps ...".
func runApps(ctx context.Context, args []string, stdout, stderr io.Writer) int {
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
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, appsUsage)
		return exitAllow
	}
	return fail(stderr, exitUsage, "imcallback apps: unknown command %q (want list, set or delete; see imcallback apps --help)", args[0])
}

// openStore opens the SQLite file at path and creates or migrates the
// schema. The caller closes the returned io.Closer.
func openStore(ctx context.Context, path string) (*sqlapps.Store, io.Closer, error) {
	if path == "" {
		return nil, nil, errors.New("--db is required")
	}
	db, err := sqlite.Open(path)
	if err != nil {
		return nil, nil, err
	}
	store, err := sqlapps.New(db, sqlapps.Options{Dialect: sqlapps.SQLite})
	if err == nil {
		err = store.Migrate(ctx)
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return store, db, nil
}

func runAppsList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("apps list", flag.ContinueOnError)
	db := fs.String("db", "", "the SQLite `file` of the apps")
	asJSON := fs.Bool("json", false, "print JSON (secrets shown as set or not)")
	fs.Usage = usageFunc(fs, "Usage: imcallback apps list --db FILE [--json]\n\nLists every app's endpoint and rules. Secrets are never printed.\n", "")
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	store, closer, err := openStore(ctx, *db)
	if err != nil {
		return fail(stderr, exitFailure, "imcallback apps list: %v", err)
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
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fail(stderr, exitFailure, "imcallback apps list: %v", err)
		}
		return exitAllow
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "APP\tURL\tPROTOCOL\tSECRET\tTIMEOUT\tRULES")
	for _, a := range apps {
		j := toJSON(a)
		timeout := "default"
		if j.Timeout != "" {
			timeout = j.Timeout
		}
		rules := "-"
		if len(j.Rules) > 0 {
			rules = strings.Join(j.Rules, " ")
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", j.App, j.URL, j.Protocol, j.Secret, timeout, rules)
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
}

func toJSON(a sqlapps.App) appJSON {
	j := appJSON{App: a.ID, URL: redactURL(a.Endpoint.URL), Protocol: a.Endpoint.Protocol.String(), Secret: "none"}
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
		case "enabled":
		case "timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return fmt.Errorf("rule %s: timeout %q is not a positive duration", cmd, val)
			}
			rule.Timeout = d
		default:
			return fmt.Errorf("rule %s: unknown setting %q (want disabled, fail-closed or timeout=DURATION)", cmd, s)
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
	db := fs.String("db", "", "the SQLite `file` of the apps (created if missing)")
	app := fs.Int("app", 0, "the app `ID`")
	var ep callback.Endpoint
	rules := ruleFlags{}
	fs.StringVar(&ep.URL, "url", "", "the app's callback `URL`")
	fs.TextVar(&ep.Protocol, "protocol", callback.Seed, "the app's wire `protocol`: seed or tencent")
	fs.StringVar(&ep.Secret, "secret", os.Getenv("CALLBACK_SECRET"), "the app's `secret`: whsec_... for seed, the token for tencent; default $CALLBACK_SECRET, empty for unsigned")
	fs.DurationVar(&ep.Timeout, "timeout", 0, "the app's request timeout; 0 means the Dispatcher's")
	fs.Var(rules, "rule", "a command's rule, `COMMAND=SETTING[,SETTING...]` (repeatable; see above)")
	fs.Usage = usageFunc(fs, appsSetHead, "")
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *app == 0 {
		return fail(stderr, exitUsage, "imcallback apps set: --app is required (see imcallback apps set --help)")
	}
	if len(rules) > 0 {
		ep.Commands = rules
	}
	store, closer, err := openStore(ctx, *db)
	if err != nil {
		return fail(stderr, exitFailure, "imcallback apps set: %v", err)
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
	db := fs.String("db", "", "the SQLite `file` of the apps")
	app := fs.Int("app", 0, "the app `ID`")
	fs.Usage = usageFunc(fs, "Usage: imcallback apps delete --db FILE --app ID\n\nDeletes app ID and its rules. Its callbacks then fail as an unknown app's.\n", "")
	if code := parse(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if *app == 0 {
		return fail(stderr, exitUsage, "imcallback apps delete: --app is required (see imcallback apps delete --help)")
	}
	store, closer, err := openStore(ctx, *db)
	if err != nil {
		return fail(stderr, exitFailure, "imcallback apps delete: %v", err)
	}
	defer closer.Close()
	if err := store.Delete(ctx, *app); err != nil {
		return fail(stderr, exitFailure, "imcallback apps delete: %v", err)
	}
	fmt.Fprintf(stdout, "app %d deleted\n", *app)
	return exitAllow
}
