package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// beforeCase is one cell of the Before matrix: a backend kind, a body
// size and a concurrency, with calls calls per measured round.
type beforeCase struct {
	kind    string
	size, c int
	calls   int
	clients []string // the library first, then raw, then the peers
}

// callsFor is the default number of calls per round at concurrency c and
// body size bytes: enough for a round to last a few tenths of a second on
// an idle 2-core machine, so that a full run stays within minutes.
func callsFor(c, size int) int {
	n := 1000
	switch {
	case c >= 1024:
		n = 5000
	case c >= 256:
		n = 4000
	case c >= 64:
		n = 3000
	}
	return n * 16384 / (16384 + size)
}

// run is what one client measured over its rounds.
type run struct {
	lat       []time.Duration
	rates     []float64 // calls per second, per measured round
	cpu       []float64 // this process's CPU time per call in ns, per measured round
	beCPU     []float64 // the backend process's CPU time per call in ns, per measured round; nil in this process
	cores     []float64 // cores the client and the backend process used together, per measured round
	conns     []float64 // new connections the backend accepted, per measured round
	maxConns  int64     // most new connections in one measured round
	warmConns int64     // new connections in the warm-up round, from an empty pool
	warmFail  int       // calls that failed in the warm-up round
	warmBreak int64     // calls the library's breaker refused in the warm-up round
	failed    int       // calls that failed (timed out, say) in the measured rounds
	breaker   string    // the library's: calls its breaker refused, its states at the end
}

func (r *run) pct(p int) time.Duration {
	slices.Sort(r.lat)
	return r.lat[min(len(r.lat)-1, len(r.lat)*p/100)]
}

// beforeRounds measures the clients of bc in alternating rounds (forward
// in even rounds, backward in odd ones), after a warm-up round each from
// an empty pool, and returns their runs by name. Every client is new, so
// each warm-up is a cold start.
//
// It returns an error naming the round when the backend process was not
// idle before one (backend.settle): the ratios would be the leftovers'.
func beforeRounds(be *backend, bc beforeCase, rounds int) (map[string]*run, error) {
	t := target{url: be.URL + "/callback", query: "?appId=10000&command=" + command, tls: be.tls, size: bc.size}
	clients := make([]*client, len(bc.clients))
	runs := make(map[string]*run)
	for i, name := range bc.clients {
		clients[i] = newClient(name, bc.c, t)
		defer clients[i].close()
		runs[name] = &run{}
	}
	name := func(cl *client, round string) string {
		return fmt.Sprintf("before %s %s c=%d, %s, %s", bc.kind, size(bc.size), bc.c, cl.name, round)
	}
	for _, cl := range clients {
		warm := &run{}
		if err := round(be, name(cl, "warm-up round"), bc.c, max(bc.c, bc.calls/10), cl.call, warm); err != nil {
			return nil, err
		}
		r := runs[cl.name]
		r.warmConns, r.warmFail = warm.maxConns, warm.failed
		if cl.breaker != nil {
			r.warmBreak, _ = cl.breaker()
		}
	}
	for i := range rounds {
		order := slices.Clone(clients)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, cl := range order {
			if err := round(be, name(cl, fmt.Sprintf("round %d of %d", i+1, rounds)), bc.c, bc.calls, cl.call, runs[cl.name]); err != nil {
				return nil, err
			}
		}
	}
	for _, cl := range clients {
		if cl.breaker != nil {
			refused, states := cl.breaker()
			r := runs[cl.name]
			r.breaker = fmt.Sprintf("%d refused, now %s", refused, or(states, "none"))
			if refused > 0 || strings.Contains(states, "open") {
				r.breaker = "OPENED: " + r.breaker
			}
		}
	}
	return runs, nil
}

// round makes n calls from c goroutines and records them in into, once
// the backend is idle; it returns an error naming the round, and
// measures nothing, when the backend is not.
func round(be *backend, name string, c, n int, call func() error, into *run) error {
	if err := be.settle(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	lats := make([]time.Duration, n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	conns := be.conns()
	var beCPU time.Duration
	if be.cpu != nil {
		beCPU = be.cpu()
	}
	cpu := cpuTime()
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t := time.Now()
				if err := call(); err != nil {
					failed.Add(1)
				}
				lats[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	client := cpuTime() - cpu
	used := client
	if be.cpu != nil {
		beCPU = be.cpu() - beCPU
		used += beCPU
		into.beCPU = append(into.beCPU, float64(beCPU)/float64(n))
	}
	into.cpu = append(into.cpu, float64(client)/float64(n))
	into.cores = append(into.cores, used.Seconds()/elapsed.Seconds())
	into.failed += int(failed.Load())
	into.lat = append(into.lat, lats...)
	into.rates = append(into.rates, float64(n)/elapsed.Seconds())
	newConns := be.conns() - conns
	into.conns = append(into.conns, float64(newConns))
	into.maxConns = max(into.maxConns, newConns)
	return nil
}

// spread is the median of the per-round ratios a/b, with their range.
func spread(a, b []float64) string {
	rs := make([]float64, len(a))
	for i := range a {
		rs[i] = a[i] / b[i]
	}
	slices.Sort(rs)
	return fmt.Sprintf("%.2fx [%.2f-%.2f]", rs[len(rs)/2], rs[0], rs[len(rs)-1])
}

// versus is the throughput ratio of a to b and, next to it, the ratio of
// their client CPU per call, each the median of the per-round ratios
// with their range.
func versus(a, b *run) string {
	return spread(a.rates, b.rates) + "; CPU " + spread(a.cpu, b.cpu)
}

// median is the median of vs.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

// beforeTable prints the Before measurements as ratios (rows), then each
// client's own figures (clients).
type beforeTable struct{ rows, clients [][]string }

// add appends the rows of one case: one for each library client in runs,
// and one for each client in the clients table.
func (t *beforeTable) add(bc beforeCase, runs map[string]*run) {
	raw := runs[nameRaw]
	for _, name := range bc.clients {
		r := runs[name]
		be, sum := "-", "-"
		if r.beCPU != nil {
			total := make([]float64, len(r.cpu))
			for i := range total {
				total[i] = r.cpu[i] + r.beCPU[i]
			}
			be, sum = fmt.Sprintf("%.1f µs", median(r.beCPU)/1e3), fmt.Sprintf("%.1f µs", median(total)/1e3)
		}
		t.clients = append(t.clients, []string{bc.kind, size(bc.size), fmt.Sprint(bc.c), name,
			fmt.Sprintf("%.0f/s", median(r.rates)),
			fmt.Sprintf("%.1f µs", median(r.cpu)/1e3), be, sum,
			fmt.Sprintf("%.2f", median(r.cores)),
			fmt.Sprintf("%.0f [%.0f-%.0f]", median(r.conns), slices.Min(r.conns), slices.Max(r.conns)),
			fmt.Sprint(r.warmConns),
			fmt.Sprint(r.failed + r.warmFail)})
	}
	for _, lib := range []string{nameLib, nameLibH2, nameLibTrust} {
		l, ok := runs[lib]
		if !ok {
			continue
		}
		kind := bc.kind
		switch lib {
		case nameLibH2:
			kind += ", library HTTP2: true"
		case nameLibTrust:
			kind += ", library TrustBodies: true"
		}
		mark := tern(l.failed+raw.failed+l.warmFail+raw.warmFail > 0, " †", "")
		row := []string{kind, size(bc.size), fmt.Sprint(bc.c), fmt.Sprintf("%.0f/s", median(raw.rates)), versus(l, raw) + mark}
		for _, p := range peerNames {
			if r, ok := runs[p]; ok {
				row = append(row, versus(l, r))
			} else {
				row = append(row, "")
			}
		}
		row = append(row,
			fmt.Sprintf("%.2fx", float64(l.pct(99))/float64(raw.pct(99))),
			fmt.Sprintf("%.1f / %.1f µs", median(l.cpu)/1e3, median(raw.cpu)/1e3),
			fmt.Sprintf("%d, %d failed, %d refused / %d, %d failed", l.warmConns, l.warmFail, l.warmBreak, raw.warmConns, raw.warmFail),
			fmt.Sprintf("%d / %d", l.maxConns, raw.maxConns),
			l.breaker,
			fmt.Sprintf("%d / %d", l.failed, raw.failed))
		t.rows = append(t.rows, row)
	}
}

func (t *beforeTable) print() {
	if len(t.rows) == 0 {
		return
	}
	fmt.Println("Before: throughput ratios, median of the rounds [min-max of the per-round ratios]; after \"CPU\", the ratio of the client CPU per call, likewise.")
	fmt.Println("† calls failed (timed out, or refused by an open breaker, which answers at once): the ratio is not a speed.")
	fmt.Println()
	markdownTable(os.Stdout, "backend | body | conc. | raw | library / raw: throughput; CPU | / default client: throughput; CPU | / retryablehttp: throughput; CPU | / OpenIM-style: throughput; CPU | p99 / raw | client CPU per call, library / raw | cold start (warm-up round): new conns, failed calls, breaker refusals; library / raw | new conns in a measured round, most; library / raw | library breaker, all rounds | failed in measured rounds, library / raw", t.rows)
	fmt.Println()
	fmt.Println("Before, every client: medians of its measured rounds. CPU per call is this process's (client) and the backend process's (\"-\" with -backend-proc=false)")
	fmt.Println("over each round, divided by its calls; cores are both processes' CPU over the round's wall time; new connections are the ones the backend accepted.")
	fmt.Println()
	markdownTable(os.Stdout, "backend | body | conc. | client | throughput | client CPU per call | backend CPU per call | client + backend CPU per call | cores used, client + backend | new conns per measured round, median [min-max] | new conns in the warm-up round | failed calls, all rounds", t.clients)
	fmt.Println()
}

// size formats a body size.
func size(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// or returns s, or def if s is empty.
func or(s, def string) string { return tern(s == "", def, s) }
