package callback_test

import (
	"context"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

func TestSSRFGuardClassifiesAddresses(t *testing.T) {
	// Only the classification: no connection is attempted to any of these.
	refused := []string{
		"127.0.0.1", "127.1.2.3", "::1",
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "fc00::1", "fd12:3456::1",
		"169.254.169.254", "169.254.0.1", "fe80::1", "fe80::1%eth0",
		"fd00:ec2::254", "100.100.100.200", "100.64.0.1",
		"0.0.0.0", "::", "0.1.2.3", "224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", // NAT64 of 127.0.0.1 and 169.254.169.254
		"192.0.0.1", "198.18.0.1", "2001:db8::1",
	}
	permitted := []string{
		"8.8.8.8", "1.1.1.1", "93.184.215.14", "172.32.0.1", "100.128.0.1",
		"2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
	}
	g := &callback.SSRFGuard{}
	for _, a := range refused {
		t.Run("refuses "+a, func(t *testing.T) {
			assert.False(t, callback.Permits(g, netip.MustParseAddr(a)), "got permitted, want refused")
		})
	}
	for _, a := range permitted {
		t.Run("permits "+a, func(t *testing.T) {
			assert.True(t, callback.Permits(g, netip.MustParseAddr(a)), "got refused, want permitted")
		})
	}

	allow := &callback.SSRFGuard{Allow: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}}
	assert.True(t, callback.Permits(allow, netip.MustParseAddr("10.1.2.3")), "an allowed network")
	assert.True(t, callback.Permits(allow, netip.MustParseAddr("::ffff:10.1.2.3")), "an allowed network, IPv4-mapped")
	assert.False(t, callback.Permits(allow, netip.MustParseAddr("10.1.3.1")), "outside the allowed network")
}

func TestSSRFGuardRefusesAtDialTime(t *testing.T) {
	b := newBackend(t, answerJSON(200, okSeed))
	port := mustPort(t, b.URL)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name  string
		url   string
		guard *callback.SSRFGuard
		ok    bool
	}{
		{"no guard: loopback is fine", b.URL, nil, true},
		{"loopback address", b.URL, &callback.SSRFGuard{}, false},
		{"a name that resolves to loopback", "http://localhost:" + port, &callback.SSRFGuard{}, false},
		{"loopback allowed", b.URL, &callback.SSRFGuard{Allow: loopback}, true},
		{"a name that resolves to an allowed address", "http://localhost:" + port, &callback.SSRFGuard{Allow: loopback}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dead deadLetters
			d, _ := newDispatcher(t, callback.Config{URL: tt.url, SSRFGuard: tt.guard, Retries: -1, DeadLetter: dead.hook})
			conns := b.conns.Load()

			r := d.Before(context.Background(), 1, "cmd", []byte(`{}`))
			require.NoError(t, d.After(context.Background(), 1, "cmd", []byte(`{}`)))
			require.NoError(t, d.Close(context.Background()))

			if tt.ok {
				assert.NoError(t, r.Err)
				assert.Zero(t, dead.len(), "dead letters")
				return
			}
			assert.ErrorIs(t, r.Err, callback.ErrForbiddenAddress, "Before's Err")
			assert.Equal(t, callback.Allow, r.Action, "a refused address is a failed callback: fail open")
			_, errs := dead.snapshot()
			require.Len(t, errs, 1, "dead letters")
			assert.ErrorIs(t, errs[0], callback.ErrForbiddenAddress, "After's dead letter")
			assert.Equal(t, conns, b.conns.Load(), "no connection may reach the backend")
		})
	}
}

func TestSSRFGuardAppliesToResolvedEndpoints(t *testing.T) {
	b := newBackend(t, answerJSON(200, okSeed))
	apps := newAppTable(map[int]callback.Endpoint{
		1: {URL: "http://localhost:" + mustPort(t, b.URL) + "/internal"},
	})
	d, _ := newDispatcher(t, callback.Config{Resolver: apps, SSRFGuard: &callback.SSRFGuard{}, Timeout: time.Minute})
	start := time.Now()
	r := d.Before(context.Background(), 1, "cmd", []byte(`{}`))
	assert.ErrorIs(t, r.Err, callback.ErrForbiddenAddress)
	assert.Less(t, time.Since(start), 20*time.Second, "a refusal is immediate, it does not wait out the minute's timeout")
	assert.Zero(t, b.count(), "requests that reached the internal service")
}

func TestSSRFGuardRejectsBadAllowList(t *testing.T) {
	_, err := callback.New(callback.Config{URL: "http://a.example", SSRFGuard: &callback.SSRFGuard{Allow: []netip.Prefix{{}}}})
	assert.ErrorIs(t, err, callback.ErrInvalidConfig)
}

func mustPort(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Port()
}
