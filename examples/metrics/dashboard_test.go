package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dashboardFile is the Grafana dashboard of the example's metrics.
const dashboardFile = "grafana-dashboard.json"

// series are the label names and values of each series name a scrape shows
// (a histogram's _bucket, _count and _sum apart).
type series map[string]map[string]map[string]bool

// scrapeSeries drives the example's traffic and reads its whole /metrics.
func scrapeSeries(t *testing.T) series {
	t.Helper()
	dm, err := startDemo("127.0.0.1:0", "127.0.0.1:0", io.Discard)
	require.NoError(t, err)
	defer dm.close()
	ctx := context.Background()
	require.NoError(t, traffic(ctx, dm.d))

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, dm.metricsURL, nil)
	require.NoError(t, err)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	require.NoError(t, err)

	out := series{}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]map[string]bool{}
		}
		for _, l := range labels {
			if out[name][l.GetName()] == nil {
				out[name][l.GetName()] = map[string]bool{}
			}
			out[name][l.GetName()][l.GetValue()] = true
		}
		for _, l := range extra {
			if out[name][l] == nil {
				out[name][l] = map[string]bool{}
			}
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			if f.GetType() == dto.MetricType_HISTOGRAM {
				add(name+"_bucket", m.GetLabel(), "le")
				add(name+"_count", m.GetLabel())
				add(name+"_sum", m.GetLabel())
				continue
			}
			add(name, m.GetLabel())
		}
	}
	return out
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		GridPos *struct {
			H, W, X, Y int
		} `json:"gridPos"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

var (
	// PromQL pieces the check reads; the dashboard's queries are plain
	// selectors, aggregations and functions, which these cover.
	reSelector  = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{([^}]*)\})?`)
	reMatcher   = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	reGrouping  = regexp.MustCompile(`\b(by|without)\s*\(([^)]*)\)`)
	reString    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	reRange     = regexp.MustCompile(`\[[^\]]*\]`)
	reNumber    = regexp.MustCompile(`^[0-9.]+$`)
	reLabelVals = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
	keywords    = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
)

// testingT is what checkExpr needs of a *testing.T, so that a test can
// watch it fail.
type testingT interface {
	Helper()
	Errorf(format string, args ...any)
	FailNow()
}

// recorder is a testingT that notes failures; FailNow ends the goroutine, as
// testing's does.
type recorder struct {
	failed bool
	msg    string // the first failure's
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	if !r.failed {
		r.msg = fmt.Sprintf(format, args...)
	}
	r.failed = true
}
func (r *recorder) FailNow() { r.failed = true; runtime.Goexit() }

// checkExpr checks that every metric expr uses is a series in s, that every
// label it matches or groups by is one of those series' labels, and that a
// literal equality matcher names a value the scrape showed.
func checkExpr(t testingT, where, expr string, s series) {
	t.Helper()
	// Metrics: identifiers outside strings, braces, ranges and groupings
	// that are not functions, keywords or numbers.
	bare := reString.ReplaceAllString(expr, `""`)
	bare = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllString(bare, " ")
	bare = reRange.ReplaceAllString(bare, " ")
	bare = reGrouping.ReplaceAllString(bare, " ")
	var metrics []string
	for _, m := range regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`).FindAllString(bare, -1) {
		name := strings.TrimSpace(strings.TrimSuffix(m, "("))
		if strings.HasSuffix(m, "(") || slices.Contains(keywords, name) || reNumber.MatchString(name) {
			continue
		}
		if _, ok := s[name]; !assert.True(t, ok, "%s: %q uses %q, which the example's /metrics does not export", where, expr, name) {
			continue
		}
		metrics = append(metrics, name)
	}
	require.NotEmpty(t, metrics, "%s: %q uses no metric", where, expr)

	hasLabel := func(label string) bool {
		for _, m := range metrics {
			if _, ok := s[m][label]; ok {
				return true
			}
		}
		return false
	}
	masked := reString.ReplaceAllStringFunc(expr, func(q string) string {
		return strings.NewReplacer("{", "(", "}", ")").Replace(q) // braces in strings are no selectors
	})
	for _, at := range reSelector.FindAllStringSubmatchIndex(masked, -1) {
		name := expr[at[2]:at[3]]
		if at[6] < 0 || !slices.Contains(metrics, name) {
			continue
		}
		for _, m := range reMatcher.FindAllStringSubmatch(expr[at[6]:at[7]], -1) {
			label, op, value := m[1], m[2], m[3]
			if !assert.Contains(t, s[name], label, "%s: %q matches label %q, which %s lacks", where, expr, label, name) {
				continue
			}
			if op == "=" && !strings.Contains(value, "$") {
				assert.True(t, s[name][label][value], "%s: %q matches %s=%q, a value the scrape never showed", where, expr, label, value)
			}
		}
	}
	for _, g := range reGrouping.FindAllStringSubmatch(expr, -1) {
		for label := range strings.SplitSeq(g[2], ",") {
			label = strings.TrimSpace(label)
			assert.True(t, hasLabel(label), "%s: %q groups by %q, a label of none of %v", where, expr, label, metrics)
		}
	}
	if strings.Contains(expr, "histogram_quantile") {
		assert.Regexp(t, `_bucket\b`, expr, "%s: histogram_quantile needs the _bucket series", where)
		assert.Regexp(t, `by \([^)]*\ble\b`, expr, "%s: histogram_quantile needs the le label kept", where)
	}
}

// TestDashboard parses the Grafana dashboard and checks each of its queries
// against what the example really exports: the test drives the example's
// traffic and scrapes its /metrics.
func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var dash dashboard
	require.NoError(t, json.Unmarshal(raw, &dash), "the dashboard must be valid JSON")
	assert.NotEmpty(t, dash.Title)
	assert.NotEmpty(t, dash.UID)

	s := scrapeSeries(t)

	ids := map[int]bool{}
	var queries int
	var titles []string
	for _, p := range dash.Panels {
		where := "panel " + p.Title
		assert.False(t, ids[p.ID], "%s: id %d used twice", where, p.ID)
		ids[p.ID] = true
		if assert.NotNil(t, p.GridPos, "%s: no gridPos", where) {
			assert.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "%s: wider than the grid", where)
		}
		if p.Type == "row" {
			continue
		}
		titles = append(titles, p.Title)
		require.NotEmpty(t, p.Targets, "%s: no query", where)
		refs := map[string]bool{}
		for _, q := range p.Targets {
			assert.False(t, refs[q.RefID], "%s: refId %q used twice", where, q.RefID)
			refs[q.RefID] = true
			checkExpr(t, where, q.Expr, s)
			queries++
		}
	}
	// The panels the README describes.
	for _, want := range []string{"Before calls by outcome", "After events by outcome", "Before latency quantiles",
		"After attempt latency quantiles", "Queue depth", "Oldest queued event age", "Breaker state"} {
		assert.Contains(t, titles, want)
	}
	assert.GreaterOrEqual(t, queries, 10)

	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) != nil {
			require.NoError(t, json.Unmarshal(v.Query, &q.Query), "variable %s: query is neither a string nor an object", v.Name)
		}
		m := reLabelVals.FindStringSubmatch(q.Query)
		if !assert.NotNil(t, m, "variable %s: want label_values(metric{...}, label), got %q", v.Name, q.Query) {
			continue
		}
		checkExpr(t, "variable "+v.Name, m[1]+m[2], s)
		assert.Contains(t, s[m[1]], m[3], "variable %s: %s has no label %q", v.Name, m[1], m[3])
	}
}

// TestCheckExprCatches makes sure the check above can fail: queries with a
// metric, a label or a value the example does not export.
func TestCheckExprCatches(t *testing.T) {
	s := series{
		"imcallback_calls_total": {"kind": {"before": true}, "outcome": {"allowed": true}, "endpoint": {"x": true}},
		"imcallback_queue_depth": {"endpoint": {"x": true}},
	}
	for name, expr := range map[string]string{
		"unknown metric":      `sum(rate(imcallback_calls[5m]))`,
		"foreign metric":      `up + imcallback_queue_depth`,
		"unknown label":       `imcallback_queue_depth{command=~"$command"}`,
		"unknown value":       `imcallback_calls_total{kind="middle"}`,
		"second selector":     `imcallback_calls_total{kind="before"} / imcallback_queue_depth{kind="before"}`,
		"group by no label":   `sum by (command) (imcallback_queue_depth)`,
		"quantile without le": `histogram_quantile(0.9, sum by (endpoint) (rate(imcallback_calls_total[5m])))`,
		"no metric":           `vector(1)`,
	} {
		t.Run(name, func(t *testing.T) {
			rec := &recorder{}
			done := make(chan struct{})
			go func() { // require's FailNow ends this goroutine only
				defer close(done)
				checkExpr(rec, name, expr, s)
			}()
			<-done
			assert.True(t, rec.failed, "checkExpr passed %q", expr)
			t.Log(rec.msg)
		})
	}
	ok := &recorder{}
	checkExpr(ok, "good", `sum by (outcome) (rate(imcallback_calls_total{kind="before",endpoint=~"$endpoint"}[$__rate_interval]))`, s)
	assert.False(t, ok.failed, "checkExpr refused a good query")
}
