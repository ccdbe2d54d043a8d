package main

import (
	"bytes"
	"context"
	"image"
	_ "image/png" // screenshots
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

// Phone is the size of the phone the test is: 390x844 CSS pixels.
const phoneWidth, phoneHeight = 390, 844

// browserWait bounds each wait for the page: generous, on a busy 2-core
// machine.
const browserWait = 30 * time.Second

// panelRow is a row of the page's callbacks panel, as a person reads it.
type panelRow struct {
	ID      string   `json:"id"`
	Outcome string   `json:"outcome"`
	Colour  string   `json:"colour"` // the outcome badge's colour class: ok, wait, bad, drop, open
	Badges  []string `json:"badges"` // every badge shown, in order
	Effect  string   `json:"effect"` // the effect badge, "" if hidden
	Replay  string   `json:"replay"` // the replay badge, "" if hidden
	Detail  string   `json:"detail"`
	Error   string   `json:"error"` // the plain error, "" if hidden
	Raw     string   `json:"raw"`   // the raw error, behind it
	Tries   string   `json:"tries"`
	Note    string   `json:"note"`
	Dead    string   `json:"dead"` // the dead-letter line, "" if hidden
}

// readPanel is the script that reads the panel's rows.
const readPanel = `[...document.querySelectorAll("#callbacks .cb")].map(d => {
  const shown = sel => { const e = d.querySelector(sel); return e && !e.hidden ? e.textContent : ""; };
  const o = d.querySelector(".outcome");
  return {id: d.dataset.event, outcome: o.textContent, colour: (o.className.match(/c-(\w+)/) || [])[1] || "",
    badges: [...d.querySelectorAll(".head .badge")].filter(b => !b.hidden).map(b => b.textContent),
    effect: shown(".effect"), replay: shown(".replay"), detail: shown(".detail"),
    error: shown(".err") && d.querySelector(".err summary").textContent, raw: shown(".err") && d.querySelector(".err .raw").textContent,
    tries: shown(".tries"), note: shown(".note"), dead: shown(".dl")};
})`

// tab is a browser tab on the demo.
type tab struct {
	t    *testing.T
	ctx  context.Context
	name string
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, actions...), b.name)
}

// waitFor polls the page until js is true.
func (b *tab) waitFor(what, js string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		rows, _ := chromedp.Run(b.ctx, chromedp.Evaluate[[]panelRow](readPanel))
		log, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(document.querySelector("#log") || document.body).innerText`))
		b.t.Fatalf("%s: waiting for %s: %v\npanel: %+v\nlog: %s", b.name, what, err, rows, log)
	}
}

func evalIn[T any](b *tab, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	require.NoError(b.t, err, "%s: %s", b.name, js)
	return v
}

// rows reads the panel by webhook-id.
func (b *tab) rows() map[string]panelRow {
	b.t.Helper()
	byID := map[string]panelRow{}
	for _, r := range evalIn[[]panelRow](b, readPanel) {
		byID[r.ID] = r
	}
	return byID
}

// rowIs is true when the row of id shows outcome.
func rowIs(id, outcome string) string {
	return `(() => { const r = document.querySelector('.cb[data-event="` + id + `"] .outcome'); return !!r && r.textContent === "` + outcome + `"; })()`
}

// noSidewaysScroll checks the page fits the phone's width: it is no wider
// than the window, and a screenshot after trying to scroll sideways is the
// one before (taken again if the page changed in between). It saves the
// screenshot in $CHAT_SCREENSHOTS if set.
func (b *tab) noSidewaysScroll(shot string) {
	b.t.Helper()
	width := evalIn[[]int](b, `document.activeElement && document.activeElement.blur(), window.scrollTo(0, 0), [document.documentElement.scrollWidth, window.innerWidth]`)
	assert.LessOrEqual(b.t, width[0], width[1], "%s: the page must fit the phone's width without scrolling sideways", shot)
	var before, after []byte
	for range 3 {
		var err error
		before, err = chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		require.NoError(b.t, err)
		assert.Zero(b.t, evalIn[float64](b, `window.scrollBy(200, 0), window.scrollX`), "%s: the page scrolled sideways", shot)
		after, err = chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		require.NoError(b.t, err)
		b.do(chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
		if bytes.Equal(before, after) {
			break
		}
	}
	assert.True(b.t, bytes.Equal(before, after), "%s: a sideways scroll changed the screen", shot)
	img, _, err := image.DecodeConfig(bytes.NewReader(before))
	require.NoError(b.t, err)
	assert.Equal(b.t, phoneWidth, img.Width, "%s: screenshot width", shot)
	if dir := os.Getenv("CHAT_SCREENSHOTS"); dir != "" {
		require.NoError(b.t, os.WriteFile(filepath.Join(dir, shot+".png"), before, 0o644))
	}
}

// newestInFirstScreen checks that the panel's newest row is on the first
// screen, without scrolling past the chat.
func (b *tab) newestInFirstScreen(what string) {
	b.t.Helper()
	got := evalIn[[]float64](b, `window.scrollTo(0, 0), (() => {
  const r = document.querySelector("#callbacks .cb").getBoundingClientRect(), box = document.querySelector("#callbacks").getBoundingClientRect();
  return [r.top, r.bottom, window.innerHeight, box.top, box.bottom]; })()`)
	top, bottom, screen, boxTop, boxBottom := got[0], got[1], got[2], got[3], got[4]
	assert.LessOrEqual(b.t, bottom, screen, "%s: the newest callback must be on the first screen: %v", what, got)
	assert.True(b.t, top >= boxTop && bottom <= boxBottom, "%s: the newest callback must not be scrolled out of the panel: %v", what, got)
}

// TestChatBrowser drives the demo in headless Chromium as a person does:
// alice on a phone 390 px wide, bob on a desktop, on the durable queue.
// They chat (allowed, denied, dropped, masked, to an unknown user); the
// App backend goes slow (a timeout, in plain words) and down (fail-open
// messages, a fail-closed group, After events dead-lettered); back
// healthy, one dead letter is replayed from the panel and one from the
// inspector, and alice's panel shows both delivered, marked as replays.
// The inspector's filter finds callbacks by command, and its event page
// reads on the phone and links back to the chat.
// Every badge shown is in the legend, with its colour; the phone's page
// never scrolls sideways and shows the newest callbacks on its first
// screen. It skips without /usr/bin/chromium, but fails under CI=true,
// and skips under -short. CHAT_SCREENSHOTS=dir saves screenshots.
func TestChatBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test takes seconds")
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: the browser test needs Debian's chromium (apt-get install chromium): %v", err)
		}
		t.Skipf("no %s (apt-get install chromium): %v", chromium, err)
	}
	e := newDurableEnv(t, callback.Tencent, protocols[0].secret, fastSchedule, func(cfg *callback.Config, app *appBackend) {
		cfg.Timeout = 300 * time.Millisecond // Slow times out at once
		app.slowDelay = 5 * time.Second
	})

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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // generous: a busy 2-core machine
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	actx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	alice := &tab{t: t, ctx: actx, name: "alice's phone"}
	alice.do(chromedp.EmulateViewport(phoneWidth, phoneHeight, chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch))
	bctx, cancelBob := chromedp.NewContext(actx) // a second tab: alice's started the browser
	defer cancelBob()
	bob := &tab{t: t, ctx: bctx, name: "bob's desktop"}

	login := func(b *tab, name string) {
		t.Helper()
		b.do(chromedp.Navigate(e.imURL+"/"), chromedp.WaitVisible(chromedp.ID("name")), chromedp.SendKeys(chromedp.ID("name"), name+kb.Enter))
		b.waitFor("the login", `!!document.querySelector("#log .info") && document.querySelector("#appmode").textContent === "healthy"`)
	}
	login(alice, "alice")
	bob.do(chromedp.EmulateViewport(1200, 900))
	login(bob, "bob")
	assert.True(t, evalIn[bool](alice, `document.querySelector("#loginform").hidden && document.querySelector("#me").textContent === "as alice"`))

	// Allowed, denied, dropped and masked; then to nobody.
	alice.do(chromedp.SendKeys(chromedp.ID("to"), "bob"))
	for _, text := range []string{"hello bob", "cheap spam", "psst, bob", "darn it"} { // m1 - m4
		alice.do(chromedp.SendKeys(chromedp.ID("text"), text+kb.Enter))
	}
	alice.waitFor("m1-m4 in the panel", rowIs("m1/after", "delivered")+" && "+rowIs("m2/before", "denied")+" && "+rowIs("m3/before", "dropped")+
		" && "+rowIs("m4/after", "delivered")+` && document.querySelectorAll(".cb .note:not(:empty)").length >= 4`)
	bob.waitFor("m1 and m4 on bob's screen", `document.querySelector("#log").innerText.includes("d*** it")`)
	bobLog := evalIn[string](bob, `document.querySelector("#log").innerText`)
	assert.Contains(t, bobLog, "alice to bob m1\nhello bob")
	assert.NotContains(t, bobLog, "spam", "a denied message reaches nobody")
	assert.NotContains(t, bobLog, "psst", "a dropped message reaches nobody")
	alice.do(chromedp.SendKeys(chromedp.ID("to"), strings.Repeat(kb.Backspace, 3)+"nobody"), chromedp.SendKeys(chromedp.ID("text"), "hello?"+kb.Enter))
	alice.waitFor("the error for nobody", `document.querySelector("#log").innerText.includes("no user nobody")`)
	aliceLog := evalIn[string](alice, `document.querySelector("#log").innerText`)
	assert.Contains(t, aliceLog, "not done: error 40001 m2\nmessage contains a banned word: spam")
	assert.Contains(t, aliceLog, "you: sent m3\npsst, bob", "the dropped message looks sent to its sender")
	assert.Contains(t, aliceLog, "not done: error 404\nno user nobody: nobody of that name has logged in")

	rows := alice.rows()
	assert.Equal(t, []string{"before", "denied"}, rows["m2/before"].Badges, "one badge per fact: %+v", rows["m2/before"])
	assert.Equal(t, "the App backend decided; denied: the sender got the error, nobody received the message", rows["m2/before"].Note)
	assert.Equal(t, []string{"before", "dropped"}, rows["m3/before"].Badges)
	assert.Equal(t, []string{"before", "allowed", "masked"}, rows["m4/before"].Badges, "the effect is its own fact")
	assert.Equal(t, []string{"after", "delivered"}, rows["m1/after"].Badges)
	assert.Equal(t, "tries: attempt 1: HTTP 200", rows["m1/after"].Tries)
	assert.NotContains(t, rows, "m2/after", "a denied message has no After")
	assert.NotContains(t, rows, "m3/after", "a dropped message has no After")
	assert.Regexp(t, `^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \S+ · attempt 1 · HTTP 200 · \d+\.\d ms · order key dm:alice\|bob$`, rows["m1/after"].Detail,
		"local time with its zone, labelled numbers, and the conversation's order key")
	alice.newestInFirstScreen("after the chat")
	alice.noSidewaysScroll("phone-chat")

	// Slow (m5; the message to nobody took no id): a Before times out, said in words, the raw error on demand.
	alice.do(chromedp.Click(chromedp.CSS(`#modes button[data-mode="slow"]`)))
	alice.waitFor("the App slow", `document.querySelector("#appmode").textContent === "slow"`)
	alice.do(chromedp.SendKeys(chromedp.ID("to"), strings.Repeat(kb.Backspace, 6)+"bob"), chromedp.SendKeys(chromedp.ID("text"), "slow one"+kb.Enter)) // m5
	alice.waitFor("m5 failed open", rowIs("m5/before", "failed-open"))
	m5 := alice.rows()["m5/before"]
	assert.Equal(t, "timed out after 0.3 s", m5.Error)
	assert.Contains(t, m5.Raw, "context deadline exceeded")
	assert.Equal(t, "open", m5.Colour)
	assert.Equal(t, []string{"before", "failed-open"}, m5.Badges)

	// Down: messages fail open, the group fails closed, After events are
	// dead-lettered, kept, with a Replay button.
	alice.do(chromedp.Click(chromedp.CSS(`#modes button[data-mode="down"]`)))
	alice.waitFor("the App down", `document.querySelector("#appmode").textContent === "down"`)
	alice.do(chromedp.SendKeys(chromedp.ID("text"), "are you there?"+kb.Enter)) // m6
	bob.waitFor("m6 on bob's screen", `document.querySelector("#log").innerText.includes("are you there?")`)
	alice.do(
		chromedp.Click(chromedp.CSS(`#groups summary`)),
		chromedp.WaitVisible(chromedp.ID("gname")),
		chromedp.SendKeys(chromedp.ID("gname"), "g1"),
		chromedp.SendKeys(chromedp.ID("gmembers"), "bob"),
		chromedp.Click(chromedp.ID("create")), // op7
	)
	alice.waitFor("op7 failed closed", rowIs("op7/before", "failed-closed")+` && document.querySelector("#log").innerText.includes("fails closed")`)
	alice.waitFor("m5/after and m6/after dead-lettered", rowIs("m5/after", "dead-lettered")+" && "+rowIs("m6/after", "dead-lettered")+
		` && document.querySelector("#dead").textContent === "2"`)
	rows = alice.rows()
	assert.Equal(t, "bad", rows["op7/before"].Colour)
	assert.Equal(t, "the callback failed, the Dispatcher failed closed; refused: the group is unchanged", rows["op7/before"].Note)
	m6 := rows["m6/after"]
	assert.Equal(t, "Dead-lettered after 3 attempts. Kept in the dead-letter store.Replay", m6.Dead, "the line and its button")
	assert.Equal(t, "the App backend answered 503 Service Unavailable", m6.Error)
	assert.Regexp(t, `^tries: (held( ×\d+)? → )?attempt 1: HTTP 503 → (held( ×\d+)? → )?attempt 2: HTTP 503 → (held( ×\d+)? → )?attempt 3: HTTP 503$`, m6.Tries,
		"a postponement is not an attempt")
	alice.newestInFirstScreen("down")
	alice.noSidewaysScroll("phone-dead-letters")

	// Every badge shown is in the legend, with the same colour; waiting
	// is not the colour of done.
	legend := evalIn[map[string]string](alice, `Object.fromEntries([...document.querySelectorAll("#legend dt .badge")].map(b => [b.textContent, getComputedStyle(b).backgroundColor + "/" + getComputedStyle(b).borderColor]))`)
	shown := evalIn[map[string]string](alice, `Object.fromEntries([...document.querySelectorAll("#callbacks .badge")].filter(b => !b.hidden).map(b => [b.textContent, getComputedStyle(b).backgroundColor + "/" + getComputedStyle(b).borderColor]))`)
	for badge, colour := range shown {
		assert.Equal(t, colour, legend[badge], "badge %q: shown in the panel, it must be in the legend with its colour", badge)
	}
	for _, waiting := range []string{"queued", "retrying", "postponed"} {
		assert.NotEqual(t, legend["delivered"], legend[waiting], "waiting (%s) is not the colour of delivered", waiting)
		assert.Equal(t, legend["queued"], legend[waiting], "waiting is one colour")
	}
	assert.NotEqual(t, legend["failed-open"], legend["allowed"])

	// Healthy again: replay m5/after from the panel, m6/after from the
	// inspector, on bob's desktop.
	alice.do(chromedp.Click(chromedp.CSS(`#modes button[data-mode="healthy"]`)))
	alice.waitFor("the App healthy", `document.querySelector("#appmode").textContent === "healthy"`)
	alice.do(chromedp.Click(chromedp.CSS(`.cb[data-event="m5/after"] .dl button`)))
	bob.do(chromedp.Navigate(e.imURL+"/inspector/?id=m6%2Fafter"), chromedp.WaitVisible(chromedp.CSS(`#dead-letter button`)))
	res, err := chromedp.RunResponse(bob.ctx, chromedp.Click(chromedp.CSS(`#dead-letter button`))) // the form posts, and the page comes back
	require.NoError(t, err)
	assert.Equal(t, int64(http.StatusOK), res.Status)
	bob.waitFor("the inspector's event page after the replay", `!document.querySelector("#dead-letter") && !!document.querySelector("#event-id")`)
	alice.waitFor("m5/after and m6/after delivered by their replays", rowIs("m5/after", "delivered")+" && "+rowIs("m6/after", "delivered")+
		` && document.querySelector("#dead").textContent === "0"`)
	rows = alice.rows()
	for _, id := range []string{"m5/after", "m6/after"} {
		r := rows[id]
		assert.Equal(t, []string{"after", "delivered", "replay"}, r.Badges, "%s: the replay is marked, its newest state shown: %+v", id, r)
		assert.Equal(t, "ok", r.Colour)
		// The breaker may still be open from the failures when the replay
		// is handed out: it is held back (postponed, not an attempt) first.
		assert.Regexp(t, ` → replay: (held( ×\d+)? → )?attempt 1: HTTP 200$`, r.Tries, id)
		assert.Regexp(t, ` · attempt 1 · HTTP 200 · `, r.Detail, id)
		assert.Empty(t, r.Dead, "%s: no dead-letter line once delivered", id)
		assert.Empty(t, r.Error, id)
	}
	alice.newestInFirstScreen("after the replays")
	alice.noSidewaysScroll("phone-replayed")
	assert.Len(t, e.waitAfters(t, 4), 4, "m1, m4, m5 and m6's After delivered")

	// The inspector, on bob's desktop: its filter form finds the After
	// callbacks by command, and only them.
	bob.do(chromedp.Navigate(e.imURL+"/inspector/"), chromedp.Click(chromedp.CSS(`details.filters summary`)),
		chromedp.SendKeys(chromedp.ID("f-command"), "C2C.CallbackAfterSendMsg"))
	_, err = chromedp.RunResponse(bob.ctx, chromedp.Submit(chromedp.ID("f-command")))
	require.NoError(t, err)
	cmds := evalIn[[]string](bob, `[...document.querySelectorAll("#recent li")].map(li => li.dataset.command)`)
	assert.NotEmpty(t, cmds)
	for _, c := range cmds {
		assert.Equal(t, "C2C.CallbackAfterSendMsg", c, "the search by command keeps only that command")
	}
	assert.Contains(t, evalIn[string](bob, `location.search`), "command=C2C.CallbackAfterSendMsg")

	// The inspector on alice's phone: m6/after's page fits the width, is a
	// few screens at most (5,100 px before), its rows labelled, its
	// errors red, and it links back to the chat.
	alice.do(chromedp.Navigate(e.imURL+"/inspector/?id=m6%2Fafter"), chromedp.WaitVisible(chromedp.ID("story")))
	alice.noSidewaysScroll("phone-inspector-event")
	height := evalIn[int](alice, `document.documentElement.scrollHeight`)
	assert.Less(t, height, 3*phoneHeight, "the event page on a phone")
	story := evalIn[string](alice, `document.querySelector("#story").innerText`)
	assert.Contains(t, story, "after accepted")
	assert.Contains(t, story, "after attempt 3")
	assert.NotContains(t, story, "#0")
	assert.Equal(t, "rgb(170, 0, 0)", evalIn[string](alice, `getComputedStyle(document.querySelector("#story details.err summary")).color`),
		"the error text is red")
	assert.Equal(t, "1", evalIn[string](alice, `[...document.querySelectorAll("#story li")].pop().dataset.replay`), "the replay's delivery is marked")
	_, err = chromedp.RunResponse(alice.ctx, chromedp.Click(chromedp.ID("back")))
	require.NoError(t, err)
	alice.do(chromedp.WaitVisible(chromedp.ID("loginform")))
	assert.Equal(t, e.imURL+"/", evalIn[string](alice, `location.href`), "back to the chat")

}
