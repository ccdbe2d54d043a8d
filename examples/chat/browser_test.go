package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// chromium is Debian's chromium package's browser.
const chromium = "/usr/bin/chromium"

// panelRow is a row of the page's callbacks panel, as a person reads it.
type panelRow struct {
	ID      string `json:"id"`
	Outcome string `json:"outcome"`
	By      string `json:"by"`     // the App or fail-open badge, "" if hidden
	Effect  string `json:"effect"` // the note's badge, "" if hidden
	Note    string `json:"note"`
}

// readPanel is the script that reads the panel's rows.
const readPanel = `[...document.querySelectorAll("#callbacks .cb")].map(d => {
  const shown = sel => { const e = d.querySelector(sel); return e && !e.hidden ? e.textContent : ""; };
  return {id: d.dataset.event, outcome: shown(".outcome"), by: shown(".by"), effect: shown(".effect"), note: shown(".note")};
})`

// TestChatBrowser loads the page in headless Chromium as a phone 390 px wide,
// logs in, sends a denied and a dropped message with Enter, reads the
// panel, makes the App backend down with its button and sees a message go
// through by failing open, then healthy again and its After delivered. It
// skips without /usr/bin/chromium, but fails under CI=true.
// CHAT_SCREENSHOTS=dir saves what the page looked like.
func TestChatBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("a headless chromium session: not in -short")
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: the browser test needs Debian's chromium (apt-get install chromium): %v", err)
		}
		t.Skipf("no %s (apt-get install chromium): %v", chromium, err)
	}
	e := newChatEnv(t, callback.Tencent, protocols[0].secret, fastRetries)
	bob := e.login(t, "bob")

	// The flags this machine's Chromium needs: no sandbox as root, and
	// nothing that reaches for the (closed) network.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // generous: a busy 2-core machine
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// waitFor polls the page until js is true.
	waitFor := func(what, js string) {
		t.Helper()
		_, err := chromedp.Run(bctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
		require.NoError(t, err, "waiting for %s", what)
	}
	rowIs := func(id, outcome string) string {
		return `(() => { const r = document.querySelector('.cb[data-event="` + id + `"] .outcome'); return !!r && r.textContent === "` + outcome + `"; })()`
	}
	shot := func(name string) {
		dir := os.Getenv("CHAT_SCREENSHOTS")
		if dir == "" {
			return
		}
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(90))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
	}

	require.NoError(t, chromedp.Do(bctx,
		// A phone: 390 px wide, where a page without a viewport meta tag
		// is laid out 980 px wide and zoomed out.
		chromedp.EmulateViewport(390, 844, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(e.imURL+"/"),
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), "alice"+kb.Enter),
	))
	waitFor("the login", `!!document.querySelector("#log .info") && document.querySelector("#appmode").textContent === "healthy"`)
	require.NoError(t, chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.ID("to"), "bob"),
		chromedp.SendKeys(chromedp.ID("text"), "cheap spam"+kb.Enter), // m1: denied
		chromedp.SendKeys(chromedp.ID("text"), "psst, bob"+kb.Enter),  // m2: dropped
	))
	waitFor("m1 denied and m2 dropped in the panel", rowIs("m1/before", "denied")+" && "+rowIs("m2/before", "dropped")+
		` && document.querySelectorAll(".cb .note").length >= 2 && [...document.querySelectorAll(".cb .note")].every(n => n.textContent)`)
	shot("denied-dropped")

	rows, err := chromedp.Run(bctx, chromedp.Evaluate[[]panelRow](readPanel))
	require.NoError(t, err)
	byID := map[string]panelRow{}
	for _, r := range rows {
		byID[r.ID] = r
	}
	assert.Equal(t, panelRow{ID: "m1/before", Outcome: "denied", By: "App", Effect: "denied",
		Note: "the App backend decided; denied: the sender got the error, nobody received the message"}, byID["m1/before"])
	assert.Equal(t, panelRow{ID: "m2/before", Outcome: "dropped", By: "App", Effect: "dropped",
		Note: "the App backend decided; dropped: the sender was told it was sent; nobody received it, no after-callback"}, byID["m2/before"])
	assert.NotContains(t, byID, "m1/after", "a denied message has no After")
	assert.NotContains(t, byID, "m2/after", "a dropped message has no After")

	chat, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("log")))
	require.NoError(t, err)
	width, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
	require.NoError(t, err)
	assert.Contains(t, chat, "not done: error 40001 m1\nmessage contains a banned word: spam")
	assert.Contains(t, chat, "you: sent m2\npsst, bob", "the dropped message looks sent to its sender")
	assert.LessOrEqual(t, width, 390, "the page must fit a 390 px wide phone without scrolling sideways")

	// Down: the next message goes through by failing open.
	require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#modes button[data-mode="down"]`))))
	waitFor("the App down", `document.querySelector("#appmode").textContent === "down"`)
	require.NoError(t, chromedp.Do(bctx, chromedp.SendKeys(chromedp.ID("text"), "hello bob"+kb.Enter))) // m3
	assert.Equal(t, frame{Type: "message", ID: "m3", From: "alice", To: "bob", Text: "hello bob"}, bob.next(),
		"bob gets the fail-open message, and only it: not the denied or dropped ones")
	waitFor("m3 failed open and its After retried", rowIs("m3/before", "failed-open")+" && "+rowIs("m3/after", "retrying"))
	shot("down")
	rows, err = chromedp.Run(bctx, chromedp.Evaluate[[]panelRow](readPanel))
	require.NoError(t, err)
	for _, r := range rows {
		if r.ID == "m3/before" {
			assert.Equal(t, "fail-open", r.By, "the panel must mark a fail-open result as not the App's")
		}
	}

	// Healthy again: the held After is delivered.
	require.NoError(t, chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#modes button[data-mode="healthy"]`))))
	waitFor("m3's After delivered", rowIs("m3/after", "delivered")+` && document.querySelector('.cb[data-event="m3/after"] .tries').textContent.includes("200")`)
	shot("healthy")
	assert.Len(t, e.waitAfters(t, 1), 1)
}
