// Command bench measures the callback library against a raw net/http client
// and against the HTTP clients IM servers use instead, calling the same
// loopback App backend with the same request bytes in the same run, and
// prints Markdown tables. The machine may be shared and noisy, so the
// clients run in alternating rounds and each figure is read as a ratio
// against the raw client's of the same rounds.
//
//	go run ./bench [-rounds 5] [-c 1,64,256,1024] [-backends http,tls,h2] [-bodies 100,4096,65536]
//	               [-peers default,retryablehttp,openim] [-peer-backends http] [-calls 0] [-backend-proc=true]
//	               [-only before,after,delivery,durable,ordered,memory,hung,tenant] [-senders 1,64]
//	               [-order-keys 64,10000] [-cpuprofile f]
//
// Before runs against each backend kind: http (plain HTTP/1.1), tls (HTTPS,
// HTTP/1.1 only) and h2 (HTTPS offering HTTP/2), by default in a separate
// process. The raw client is HTTP/1.1 with a pool sized for the
// concurrency; against h2 the library is measured twice, with its default
// (HTTP/1.1) and with Config.HTTP2. With none of -c, -backends and -bodies
// given, the run is the concurrency sweep on every backend with 100-byte
// bodies, then 4 KiB and 64 KiB bodies on http at concurrency 64; with any
// of them given, every combination of the three.
//
// Before prints two tables: the ratios of the library to raw and to each
// peer (throughput, then client CPU per call, each a median of the
// per-round ratios with their range), then every client's own figures:
// its throughput, its client CPU per call, the backend process's CPU per
// call over its rounds and the two summed, the cores both processes used,
// and the new connections the backend accepted per measured round.
//
// Every round that uses the App backend process (Before, delivery,
// durable, ordered; natsqueue-proc's NATS server process too) first waits
// for it to be near idle, and the run stops with a non-zero exit naming
// the round when it is still busy after 5 s.
//
// The ordered case delivers one app's events unkeyed and under each of
// -order-keys order keys (callback.WithOrderKey, event i under key i mod
// keys), on the memory queue and natsqueue.Embedded, from the last
// -senders count of goroutines, and compares After's cost per call with
// 64 keys and without.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// body is the 100-byte message event of the After, memory and tenant cases.
var body = eventBody(100)

const (
	answer    = `{"code":200,"msg":"success"}`
	command   = "message.send.before"
	appID     = 10000
	hungCalls = 3000
	hungConc  = 64
)

func main() {
	testing.Init()
	calls := flag.Int("calls", 0, "Before calls per measured round; 0 means a default for each concurrency and body size")
	rounds := flag.Int("rounds", 5, "alternating measured rounds of each client")
	events := flag.Int("events", 20000, "After events per memory-queue delivery round")
	durableEvents := flag.Int("durable-events", 5000, "After events per natsqueue delivery round")
	senderList := flag.String("senders", "1,64", "comma-separated numbers of goroutines calling After in the delivery rounds (the raw pool is measured with the first)")
	only := flag.String("only", "before,after,delivery,durable,ordered,memory,hung,tenant", "comma-separated cases to run")
	orderKeys := flag.String("order-keys", "64,10000", "comma-separated numbers of order keys of the ordered case")
	concs := flag.String("c", "1,64,256,1024", "comma-separated Before concurrencies")
	kinds := flag.String("backends", "http,tls,h2", "comma-separated Before backends: http, tls (HTTPS, HTTP/1.1 only), h2 (HTTPS with HTTP/2)")
	bodies := flag.String("bodies", "100", "comma-separated Before body sizes in bytes (valid JSON message events)")
	peers := flag.String("peers", strings.Join(peerNames, ","), "comma-separated peers measured beside the library and raw: "+strings.Join(peerNames, ", ")+"; empty for none")
	peerKinds := flag.String("peer-backends", "http", "comma-separated backends the peers run against (on TLS, Go's default client and retryablehttp handshake for most calls at high concurrency, which takes minutes)")
	libH2 := flag.Bool("lib-h2", true, "against the h2 backend, also measure the library with HTTP2: true")
	trust := flag.Bool("trust-bodies", true, "with bodies of 4 KiB and more, also measure the library with TrustBodies: true")
	proc := flag.Bool("backend-proc", true, "run the App backend in a separate process, so that the client CPU per call is the client's alone")
	serveKind := flag.String("serve", "", "internal: be the App backend of this kind for -backend-proc")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	log.SetFlags(0)
	if *serveKind != "" {
		serve(*serveKind)
		return
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	run := func(name string) bool { return slices.Contains(strings.Split(*only, ","), name) }
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })

	fmt.Printf("GOOS=%s GOARCH=%s CPUs=%d GOMAXPROCS=%d %s, App backend %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
		runtime.GOMAXPROCS(0), runtime.Version(), tern(*proc, "in a separate process", "in this process (client CPU includes the server's)"))

	if run("before") {
		clients := []string{nameLib, nameRaw}
		if *peers != "" {
			clients = append(clients, strings.Split(*peers, ",")...)
		}
		cases := beforeCases(ints(*concs), strings.Split(*kinds, ","), ints(*bodies), set["c"] || set["backends"] || set["bodies"])
		bt := &beforeTable{}
		backends := map[string]*backend{}
		for _, bc := range cases {
			be := backends[bc.kind]
			if be == nil {
				be = newBackend(bc.kind, *proc)
				defer be.Close()
				backends[bc.kind] = be
			}
			bc.calls = tern(*calls > 0, *calls, callsFor(bc.c, bc.size))
			bc.clients = clients
			if !slices.Contains(strings.Split(*peerKinds, ","), bc.kind) {
				bc.clients = clients[:2]
			}
			if bc.kind == "h2" && *libH2 {
				bc.clients = append([]string{nameLibH2}, bc.clients...)
			}
			if bc.size >= 4096 && *trust {
				bc.clients = append([]string{nameLibTrust}, bc.clients...)
			}
			start := time.Now()
			runs, err := beforeRounds(be, bc, *rounds)
			if err != nil {
				for _, be := range backends {
					be.Close()
				}
				log.Fatalf("bench: %v", err)
			}
			bt.add(bc, runs)
			log.Printf("before %s %s c=%d: %d calls per round, %v", bc.kind, size(bc.size), bc.c, bc.calls, time.Since(start).Round(time.Millisecond))
		}
		bt.print()
	}

	t := &table{}
	if run("after") {
		ns, allocs, bytesPer := afterCost()
		t.row("After: cost per call (memory queue, workers held)", fmt.Sprintf("%.0f ns, %d allocs, %d B", ns, allocs, bytesPer), "", "", "≤ 500 ns, ≤ 2 allocs")
	}
	var queues []string
	if run("delivery") {
		queues = append(queues, queueMemory, queueRaw)
	}
	if run("durable") {
		queues = append(queues, queueNATS, queueNATSProc)
		if !slices.Contains(queues, queueMemory) {
			queues = append(queues, queueMemory)
		}
	}
	if len(queues) > 0 {
		be := newBackend("http", *proc)
		for i, senders := range ints(*senderList) {
			qs := queues
			if i > 0 {
				qs = slices.DeleteFunc(slices.Clone(queues), func(q string) bool { return q == queueRaw })
			}
			ds, err := deliveryRounds(be, qs, *events, *durableEvents, *rounds, senders)
			if err != nil {
				be.Close()
				log.Fatalf("bench: %v", err)
			}
			deliveryRows(t, ds, senders)
		}
		be.Close()
	}
	if run("ordered") {
		be := newBackend("http", *proc)
		senders := ints(*senderList)
		ds, err := orderedRounds(be, []string{queueMemory, queueNATS}, ints(*orderKeys), *events, *durableEvents, *rounds, senders[len(senders)-1])
		be.Close()
		if err != nil {
			log.Fatalf("bench: %v", err)
		}
		orderedRows(t, ds, ints(*orderKeys), senders[len(senders)-1])
		orderedCostRow(t, *rounds)
	}
	if run("memory") {
		per := queueMemoryUse(100_000, 200)
		t.row("After: memory per queued event, 200 B body", fmt.Sprintf("%.0f B (%.0f B overhead)", per, per-200), "", "", "")
	}
	if run("hung") {
		hung, sent := hungBackend()
		noBreaker := time.Duration(hungCalls/hungConc) * 2 * time.Second
		t.row(fmt.Sprintf("Hung backend: %d Before at concurrency %d, 2 s timeout", hungCalls, hungConc),
			fmt.Sprintf("%s (%d requests sent)", hung.Round(10*time.Millisecond), sent),
			fmt.Sprintf("~%s without breaker (computed)", noBreaker), ratio(hung.Seconds()/noBreaker.Seconds()), "a few seconds")
	}
	if run("tenant") {
		for _, durable := range []bool{false, true} {
			name := tern(durable, "natsqueue.Embedded", "memory queue")
			alone, hung, slow, p99, failed := tenantRows(durable)
			bound := func(d time.Duration) string {
				return tern(d < 2*alone+time.Second, "met", "NOT met")
			}
			t.row(fmt.Sprintf("Tenant, %s: app 2's %d events alone", name, tenantEvents), secs(alone), "", "", "")
			t.row(fmt.Sprintf("Tenant, %s: beside a hung app 1", name), secs(hung), "", ratio(hung.Seconds()/alone.Seconds()), "≤ 2x + 1 s: "+bound(hung))
			t.row(fmt.Sprintf("Tenant, %s: beside a slow app 1 (1.5 s)", name), secs(slow), "", ratio(slow.Seconds()/alone.Seconds()), "≤ 2x + 1 s: "+bound(slow))
			t.row(fmt.Sprintf("Tenant, %s: app 2's Before beside the hung app", name), "p99 "+dur(p99)+fmt.Sprintf(", %d failed", failed), "", "", "p99 < 500 ms, none fails")
		}
	}
	t.print(os.Stdout)
}

// beforeCases is the Before matrix: with all, every combination of
// concurrencies, backends and body sizes; otherwise the default plan, the
// concurrency sweep on every backend with the smallest body, then the
// other bodies on the first backend at concurrency 64.
func beforeCases(concs []int, kinds []string, sizes []int, all bool) []beforeCase {
	var cases []beforeCase
	if all {
		for _, k := range kinds {
			for _, s := range sizes {
				for _, c := range concs {
					cases = append(cases, beforeCase{kind: k, size: s, c: c})
				}
			}
		}
		return cases
	}
	for _, k := range kinds {
		for _, c := range concs {
			cases = append(cases, beforeCase{kind: k, size: 100, c: c})
		}
	}
	for _, s := range []int{4096, 65536} {
		cases = append(cases, beforeCase{kind: kinds[0], size: s, c: 64})
	}
	return cases
}

// ints parses a comma-separated list of numbers.
func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			log.Fatalf("bad number %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out
}

// table collects the rows of the printed table of the other cases.
type table struct{ rows [][]string }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer) {
	if len(t.rows) == 0 {
		return
	}
	markdownTable(w, "Measure | imcallback | baseline | ratio [min-max] | target", t.rows)
}

// markdownTable prints a Markdown table: header is its column names
// joined by " | ", and each row has as many cells.
func markdownTable(w io.Writer, header string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n", header)
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", strings.Count(header, " | ")+1))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

func perSec(v float64) string { return fmt.Sprintf("%.0f/s", v) }

func dur(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func ratio(v float64) string { return fmt.Sprintf("%.2fx", v) }

func tern[T any](c bool, a, b T) T {
	if c {
		return a
	}
	return b
}

// deliveryRows adds the rows of one senders count's delivery rounds to t.
func deliveryRows(t *table, ds map[string][]delivered, senders int) {
	rate := func(d delivered) float64 { return d.rate }
	call := func(d delivered) float64 { return d.callNs }
	cpu := func(d delivered) float64 { return d.cpuNs }
	mem := ds[queueMemory]
	from := fmt.Sprintf("%d sender%s", senders, tern(senders == 1, "", "s"))
	if raw, ok := ds[queueRaw]; ok {
		t.row(fmt.Sprintf("After delivery throughput (%d workers, %s), memory queue vs raw pool", deliveryWorkers, from),
			perSec(median(field(mem, rate))), perSec(median(field(raw, rate))), spread(field(mem, rate), field(raw, rate)), "≥ 0.95x")
		t.row(fmt.Sprintf("After delivery, client CPU per event (%s), memory queue vs raw pool", from),
			dur(time.Duration(median(field(mem, cpu)))), dur(time.Duration(median(field(raw, cpu)))), spread(field(mem, cpu), field(raw, cpu)), "")
	}
	if nq, ok := ds[queueNATS]; ok {
		t.row(fmt.Sprintf("After delivery throughput (%s), natsqueue.Embedded vs memory queue", from),
			perSec(median(field(nq, rate))), perSec(median(field(mem, rate))), spread(field(nq, rate), field(mem, rate)), "≥ 0.80x")
		t.row(fmt.Sprintf("After: mean call while delivering (%s), natsqueue vs memory", from),
			dur(time.Duration(median(field(nq, call)))), dur(time.Duration(median(field(mem, call)))), spread(field(nq, call), field(mem, call)), "")
		t.row(fmt.Sprintf("After delivery, client CPU per event (%s), natsqueue vs memory", from),
			dur(time.Duration(median(field(nq, cpu)))), dur(time.Duration(median(field(mem, cpu)))), spread(field(nq, cpu), field(mem, cpu)), "")
	}
	if np, ok := ds[queueNATSProc]; ok {
		srv := func(d delivered) float64 { return d.serverCPUNs }
		t.row(fmt.Sprintf("After delivery throughput (%s), natsqueue.New with the NATS server in its own process vs memory queue", from),
			perSec(median(field(np, rate))), perSec(median(field(mem, rate))), spread(field(np, rate), field(mem, rate)), "")
		t.row(fmt.Sprintf("After delivery, IM process CPU per event (%s), natsqueue.New vs memory", from),
			dur(time.Duration(median(field(np, cpu)))), dur(time.Duration(median(field(mem, cpu)))), spread(field(np, cpu), field(mem, cpu)), "")
		t.row(fmt.Sprintf("After delivery, NATS server process CPU per event (%s)", from),
			dur(time.Duration(median(field(np, srv)))), "", "", "")
	}
}

// orderedRows adds the rows of the ordered case's delivery rounds to t:
// each queue's keyed rate against its unkeyed rate of the same rounds.
func orderedRows(t *table, ds map[string][]delivered, keyCounts []int, senders int) {
	rate := func(d delivered) float64 { return d.rate }
	for _, q := range []string{queueMemory, queueNATS} {
		unkeyed, ok := ds[orderedName(q, 0)]
		if !ok {
			continue
		}
		name := tern(q == queueNATS, "natsqueue.Embedded", "memory queue")
		for _, keys := range keyCounts {
			keyed := ds[orderedName(q, keys)]
			t.row(fmt.Sprintf("Ordered After delivery (%s, one app, %d senders), %d order keys vs unkeyed", name, senders, keys),
				perSec(median(field(keyed, rate))), perSec(median(field(unkeyed, rate))), spread(field(keyed, rate), field(unkeyed, rate)), "≥ 0.80x")
		}
	}
}

// orderedCostRow adds After's cost per call under 64 order keys against
// without one, in rounds alternating rounds of each.
func orderedCostRow(t *table, rounds int) {
	var keyed, plain []float64
	var allocs, bytes int64
	for i := range rounds {
		if i%2 == 0 {
			ns, _, _ := afterCostKeyed(0)
			plain = append(plain, ns)
		}
		ns, a, b := afterCostKeyed(64)
		keyed, allocs, bytes = append(keyed, ns), a, b
		if i%2 == 1 {
			ns, _, _ := afterCostKeyed(0)
			plain = append(plain, ns)
		}
	}
	t.row("After: cost per call with an order key (64 keys) vs without (memory queue, workers held)",
		fmt.Sprintf("%.0f ns, %d allocs, %d B", median(keyed), allocs, bytes), fmt.Sprintf("%.0f ns", median(plain)), spread(keyed, plain), "≤ 1.10x")
}
