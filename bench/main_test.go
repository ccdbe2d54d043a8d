package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain is also the backend process of the tests that start one: the
// test binary is what os.Executable returns.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == "-serve" {
		serve(os.Args[2])
		return
	}
	goleak.VerifyTestMain(m)
}

func TestEventBody(t *testing.T) {
	for _, size := range []int{100, 4096, 65536} {
		b := eventBody(size)
		assert.Len(t, b, size)
		assert.True(t, json.Valid(b), "size %d: not valid JSON", size)
		m, err := json.Marshal(newEvent(size))
		require.NoError(t, err)
		assert.True(t, bytes.Equal(m, b), "size %d: the OpenIM-style request differs from the others'", size)
	}
}

func TestBackendProcess(t *testing.T) {
	for _, kind := range []string{"http", "tls"} {
		t.Run(kind, func(t *testing.T) {
			be := newBackend(kind, true)
			require.NotZero(t, be.pid)
			assert.Equal(t, kind == "tls", be.tls != nil)
			cl := rawClient(1, be.tls)
			require.NoError(t, post(cl, be.URL+"/callback", body))
			require.NoError(t, post(cl, be.URL+"/callback", body))
			conns, received := be.stat()
			assert.Equal(t, int64(1), conns, "connections")
			assert.Equal(t, int64(2), received, "requests")
			defer cl.CloseIdleConnections()
			cpu := be.cpu()
			for range 200 {
				require.NoError(t, post(cl, be.URL+"/callback", body))
			}
			assert.Greater(t, be.cpu(), cpu, "the backend process's CPU time after 200 requests")
			require.NoError(t, be.settle(), "an idle backend")
			be.Close()
			err := syscall.Kill(be.pid, 0)
			assert.True(t, errors.Is(err, syscall.ESRCH), "backend process %d after Close: %v, want gone", be.pid, err)
		})
	}
}

func TestBeforeRounds(t *testing.T) {
	be := newBackend("http", false)
	defer be.Close()
	bc := beforeCase{kind: "http", size: 4096, c: 4, calls: 40, clients: []string{nameLib, nameRaw, nameOpenIM}}
	runs, err := beforeRounds(be, bc, 3)
	require.NoError(t, err)
	require.Len(t, runs, 3)
	for name, r := range runs {
		assert.Len(t, r.rates, 3, name)
		assert.Len(t, r.lat, 120, name)
		assert.Zero(t, r.failed, name)
		assert.LessOrEqual(t, r.warmConns, int64(2*bc.c), name)
	}
	// The OpenIM-style peer keeps Go's default 2 idle connections, so at
	// concurrency 4 it dials in every round; the library and raw pools keep
	// theirs (a short warm-up may leave one to dial).
	assert.LessOrEqual(t, runs[nameLib].maxConns, int64(bc.c), "library: new connections in a round after the warm-up")
	assert.LessOrEqual(t, runs[nameRaw].maxConns, int64(bc.c), "raw: new connections in a round after the warm-up")
	assert.Equal(t, "0 refused, now closed", runs[nameLib].breaker)
	for name, r := range runs {
		assert.Len(t, r.conns, 3, name)
		assert.Len(t, r.cores, 3, name)
		assert.Nil(t, r.beCPU, "%s: no backend process, no backend CPU", name)
	}
	tb := &beforeTable{}
	tb.add(bc, runs)
	require.Len(t, tb.clients, 3, "a row per client")
	assert.Equal(t, []string{nameLib, nameRaw, nameOpenIM}, []string{tb.clients[0][3], tb.clients[1][3], tb.clients[2][3]})
	assert.Equal(t, "-", tb.clients[0][6], "backend CPU in this process")
	assert.Equal(t, int64(3*3*bc.calls+3*max(bc.c, bc.calls/10)), be.received(), "requests the backend read")
}

// TestSettleBusyBackend: a backend process kept busy makes settle, and so
// the Before, delivery and ordered round after it, fail with an error
// naming the round; once it rests, settle passes.
func TestSettleBusyBackend(t *testing.T) {
	be := newBackend("http", true)
	defer be.Close()
	be.spin(true)
	err := be.settle()
	require.Error(t, err, "a busy backend must fail settle")
	assert.Contains(t, err.Error(), "not idle")
	bc := beforeCase{kind: "http", size: 100, c: 2, calls: 10, clients: []string{nameLib, nameRaw}}
	_, err = beforeRounds(be, bc, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "before http 100 B c=2, library, warm-up round: ", "the error names the round")
	_, err = deliveryRounds(be, []string{queueMemory, queueRaw}, 10, 10, 1, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "delivery memory, 1 sender, warm-up round: the backend process", "the error names the round")
	_, err = orderedRounds(be, []string{queueMemory}, []int{3}, 10, 10, 1, 2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ordered memory, 0 keys, 2 senders, warm-up round: the backend process", "the error names the round")
	assert.Zero(t, be.received(), "no round ran")
	be.spin(false)
	require.NoError(t, be.settle(), "the backend at rest")

	// At rest, a round measures the backend process's CPU and connections.
	runs, err := beforeRounds(be, bc, 1)
	require.NoError(t, err)
	for name, r := range runs {
		require.Len(t, r.beCPU, 1, name)
		assert.Positive(t, r.beCPU[0], "%s: the backend process's CPU per call", name)
		require.Len(t, r.conns, 1, name)
		assert.LessOrEqual(t, r.conns[0], float64(bc.c), "%s: new connections after the warm-up", name)
	}
}

// TestOrderedRows runs the ordered case at tiny scale: every queue and
// key count delivers all its events in each round, and the table gets a
// row per queue and key count and the cost row.
func TestOrderedRows(t *testing.T) {
	be := newBackend("http", false)
	defer be.Close()
	keyCounts := []int{3, 50}
	ds, err := orderedRounds(be, []string{queueMemory, queueNATS}, keyCounts, 200, 60, 2, 4)
	require.NoError(t, err)
	require.Len(t, ds, 6)
	for name, rs := range ds {
		require.Len(t, rs, 2, name)
		for _, r := range rs {
			assert.Positive(t, r.rate, name)
		}
	}
	// Warm-up rounds of a tenth, then two rounds, of each queue and keying.
	assert.Equal(t, int64(3*(200/10+2*200)+3*(60/10+2*60)), be.received(), "requests the backend read")
	tb := &table{}
	orderedRows(tb, ds, keyCounts, 4)
	orderedCostRow(tb, 1)
	require.Len(t, tb.rows, 5)
	assert.Contains(t, tb.rows[1][0], "memory queue, one app, 4 senders), 50 order keys vs unkeyed")
	assert.Contains(t, tb.rows[3][0], "natsqueue.Embedded")
	assert.Contains(t, tb.rows[4][0], "order key")
}
