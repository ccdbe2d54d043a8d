package callback_test

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/callbacktest"
	"github.com/imcallback/callback/command"
)

// goBlock matches a ```go code block of the README.
var goBlock = regexp.MustCompile("(?ms)^```go\n(.*?)^```\n")

// TestREADMEGoBlocksAreCompiled keeps the README's Go from drifting: every
// ```go block is either quoted verbatim (line by line, indentation aside)
// in a _test.go file of the module, which go test compiles and mostly
// runs, or, when it only declares types, has the fields and methods of
// the package's own declarations.
func TestREADMEGoBlocksAreCompiled(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	blocks := goBlock.FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks)

	var sources []string // the module's test files, normalised
	var names []string
	require.NoError(t, filepath.WalkDir(".", func(path string, e fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case e.IsDir() && (strings.HasPrefix(e.Name(), ".") || e.Name() == "testdata") && path != ".":
			return filepath.SkipDir
		case !e.IsDir() && strings.HasSuffix(path, "_test.go"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sources, names = append(sources, normalise(string(b))), append(names, path)
		}
		return nil
	}))

	decls := packageDecls(t)
	for _, m := range blocks {
		block := m[1]
		first, _, _ := strings.Cut(strings.TrimSpace(block), "\n")
		t.Run(first, func(t *testing.T) {
			if types, ok := typeDecls(block); ok {
				for name, want := range types {
					assert.Equal(t, decls[name], want, "README's %s does not match the package's", name)
				}
				return
			}
			want := normalise(block)
			for i, src := range sources {
				if strings.Contains(src, want) {
					t.Logf("quoted in %s", names[i])
					return
				}
			}
			t.Errorf("the README's Go block starting %q is in no _test.go file: quote it in a test or an Example, so that it compiles", first)
		})
	}
}

// normalise trims each line and drops empty ones, so that a block matches
// its copy at any indentation; a trailing newline ends every line.
func normalise(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return "\n" + b.String()
}

// typeDecls parses a block that only declares types and returns each
// type's shape; ok is false for any other block.
func typeDecls(block string) (map[string]string, bool) {
	f, err := parser.ParseFile(token.NewFileSet(), "", "package callback\n"+block, 0)
	if err != nil || len(f.Decls) == 0 {
		return nil, false
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.TYPE {
			return nil, false
		}
		for _, s := range g.Specs {
			ts := s.(*ast.TypeSpec)
			out[ts.Name.Name] = shape(ts.Type)
		}
	}
	return out, true
}

// packageDecls returns the shape of every type declared in the package's
// own (non-test) files.
func packageDecls(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
				for _, s := range g.Specs {
					ts := s.(*ast.TypeSpec)
					out[ts.Name.Name] = shape(ts.Type)
				}
			}
		}
	}
	return out
}

// shape prints a struct's fields or an interface's methods, one per line,
// with the package qualifier "callback." dropped, so that the README may
// write the types as a user of the package does.
func shape(e ast.Expr) string {
	var list *ast.FieldList
	switch e := e.(type) {
	case *ast.StructType:
		list = e.Fields
	case *ast.InterfaceType:
		list = e.Methods
	default:
		return printed(e)
	}
	var b strings.Builder
	for _, f := range list.List {
		typ := strings.ReplaceAll(printed(f.Type), "callback.", "")
		if len(f.Names) == 0 {
			fmt.Fprintf(&b, "%s\n", typ)
		}
		for _, n := range f.Names {
			fmt.Fprintf(&b, "%s %s\n", n.Name, typ)
		}
	}
	return b.String()
}

func printed(e ast.Expr) string {
	var b bytes.Buffer
	_ = printer.Fprint(&b, token.NewFileSet(), e)
	return b.String()
}

// The README's "Use" section, start-up, quoted verbatim: it runs (nothing
// is sent, so Close returns at once).
func readmeStartup() error {
	d, err := callback.New(callback.Config{
		URL: "http://127.0.0.1:8989/callback",
		Commands: map[string]callback.Rule{
			"friend.add.before":       {FailClosed: true}, // deny if the App cannot be asked
			"user.modify.after":       {Disabled: true},   // never sent
			"group.member.add.before": {Timeout: 500 * time.Millisecond},
		},
		DeadLetter: func(ev callback.Event, err error) { /* store ev for replay */ },
	})
	if err != nil {
		return err // a bad URL or setting fails here, not on the first message
	}
	defer func() {
		// Close drains the after-queue; its deadline bounds the wait for an
		// App backend that is down.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	}()
	return nil
}

// readmeLog records what the README's IM server did, for the test.
var readmeLog []string

// The README's hot path, quoted verbatim.
func sendMessage(ctx context.Context, d *callback.Dispatcher, appID int, body []byte) error {
	// Before the event:
	resp := d.Before(ctx, appID, "message.send.before", body)
	switch resp.Action {
	case callback.Deny:
		return denied(resp.Code, resp.Msg) // the App's code and message go to the client
	case callback.Drop:
		return nil // the sender is told it was sent; nobody receives it
	}
	body, err := resp.Apply(body) // the App's changes, if it made any
	if err != nil {
		return err
	}
	deliver(body)

	// After the event; returns at once:
	if err := d.After(ctx, appID, "message.send.after", body); err != nil {
		// Not queued: ErrQueueFull, ErrClosed, ErrInvalidBody, ErrInvalidCommand,
		// ErrInvalidEventID (a bad WithEventID), ErrResolve (with a Resolver),
		// ctx's error, or natsqueue.ErrPublish (with a durable Queue: perhaps
		// stored all the same; retry with the same WithEventID).
		slog.ErrorContext(ctx, "after-callback not queued", "error", err)
	}
	return nil
}

// denied and deliver are the README's placeholders for the IM server's
// own code.
func denied(code int, msg string) error { return fmt.Errorf("denied: %d %s", code, msg) }
func deliver(body []byte)               { readmeLog = append(readmeLog, "delivered "+string(body)) }

func TestREADMEUseRuns(t *testing.T) {
	require.NoError(t, readmeStartup())

	app := callbacktest.NewServer(t, callbacktest.Config{})
	app.On(command.MessageSendBefore, callbacktest.Allow(), callbacktest.Deny(40001, "banned word"), callbacktest.Drop())
	d, err := callback.New(callback.Config{URL: app.URL})
	require.NoError(t, err)
	readmeLog = nil
	ctx := context.Background()
	for _, text := range []string{"hello", "spam", "psst"} {
		if err := sendMessage(ctx, d, 1, []byte(`{"text":"`+text+`"}`)); err != nil {
			readmeLog = append(readmeLog, err.Error())
		}
	}
	require.NoError(t, d.Close(ctx))
	// Seed has no drop: the App's drop arrives as a deny.
	assert.Equal(t, []string{`delivered {"text":"hello"}`, "denied: 40001 banned word", "denied: 403 dropped"}, readmeLog)
	// Close drained the after-queue: the one delivered message was reported.
	after := app.WaitFor(5*time.Second, callbacktest.Command(command.MessageSendAfter))
	assert.JSONEq(t, `{"text":"hello"}`, string(after.Body))
	assert.Len(t, app.Calls(), 4, "three Before calls and one After")
}
