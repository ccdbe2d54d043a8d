package callback_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcallback/callback"
)

// Answers whose top-level keys repeat, exactly or in another case, could be
// read two ways; both protocols refuse them.
func TestAmbiguousAnswersAreBad(t *testing.T) {
	tests := []struct {
		name     string
		protocol callback.Protocol
		answer   string
	}{
		{"seed: case-variant code", callback.AppCommand, `{"code":403,"Code":200}`},
		{"seed: case-variant code, other order", callback.AppCommand, `{"Code":200,"code":403}`},
		{"seed: duplicate code", callback.AppCommand, `{"code":403,"code":200}`},
		{"seed: escaped case variant", callback.AppCommand, `{"code":403,"\u0043ode":200}`},
		{"seed: case-variant data", callback.AppCommand, `{"code":200,"data":[1],"DATA":[2]}`},
		{"seed: Code alone is no code", callback.AppCommand, `{"Code":403}`},
		{"tencent: case-variant ErrorCode", callback.Tencent, `{"ErrorCode":1,"errorcode":0}`},
		{"tencent: duplicate ErrorCode", callback.Tencent, `{"ErrorCode":1,"ErrorCode":0}`},
		{"tencent: case-variant MsgBody", callback.Tencent, `{"ErrorCode":0,"MsgBody":[],"msgbody":[{}]}`},
		{"tencent: not UTF-8", callback.Tencent, "{\"ErrorCode\":1,\"ErrorInfo\":\"\xff\"}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, answerJSON(200, tt.answer))
			d, _ := newDispatcher(t, callback.Config{URL: b.URL, Protocol: tt.protocol})
			r := d.Before(context.Background(), 1, "cmd", []byte(`{}`))
			assert.True(t, errors.Is(r.Err, callback.ErrBadAnswer), "got %v, want ErrBadAnswer", r.Err)
		})
	}
}

// JSON must be UTF-8 (RFC 8259); json.Valid alone lets invalid UTF-8 in
// strings through.
func TestBodyMustBeUTF8(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL})
	for _, body := range []string{"{\"a\":\"\xff\"}", "{\"a\xc3\":1}", "\"\xed\xa0\x80\""} {
		r := d.Before(context.Background(), 1, "cmd", []byte(body))
		assert.ErrorIs(t, r.Err, callback.ErrInvalidBody, "Before %q", body)
		assert.ErrorIs(t, d.After(context.Background(), 1, "cmd", []byte(body)), callback.ErrInvalidBody, "After %q", body)
	}
	assert.Equal(t, 0, b.count(), "nothing was sent")
	r := d.Before(context.Background(), 1, "cmd", []byte(`{"a":"héllo ✓"}`))
	assert.NoError(t, r.Err, "valid UTF-8 passes")
}

// rawServer is a TCP server that answers every request with the bytes that
// answer writes, whatever the request says: an App backend no net/http
// server would be.
func rawServer(t *testing.T, answer func(w *bufio.Writer)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for { // read the request header; the body is small and ignored
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				w := bufio.NewWriter(c)
				answer(w)
				_ = w.Flush()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/callback"
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"code\":200}"

// A hostile App backend's headers are bounded: one huge header, and a flood
// of 1xx answers, each small, whose headers add up.
func TestResponseHeadersBounded(t *testing.T) {
	hugeHeader := func(w *bufio.Writer) {
		w.WriteString("HTTP/1.1 200 OK\r\nX-Junk: " + strings.Repeat("a", 1<<20) + "\r\n")
		w.WriteString(okAnswer[len("HTTP/1.1 200 OK\r\n"):])
	}
	earlyHints := func(w *bufio.Writer) {
		hint := "HTTP/1.1 103 Early Hints\r\nLink: <" + strings.Repeat("b", 4<<10) + ">\r\n\r\n"
		for range 256 { // 1 MiB of 1xx headers
			w.WriteString(hint)
		}
		w.WriteString(okAnswer)
	}
	for name, answer := range map[string]func(*bufio.Writer){"one huge header": hugeHeader, "1xx flood": earlyHints} {
		t.Run(name, func(t *testing.T) {
			url := rawServer(t, answer)
			d, _ := newDispatcher(t, callback.Config{URL: url, Timeout: 5 * time.Second})
			r := d.Before(context.Background(), 1, "cmd", []byte(`{}`))
			require.Error(t, r.Err, "a 1 MiB header is over the 64 KiB default")
			assert.Contains(t, r.Err.Error(), "header")
			assert.Equal(t, callback.Allow, r.Action, "fails open")

			big, _ := newDispatcher(t, callback.Config{URL: url, Timeout: 5 * time.Second, MaxResponseHeaderBytes: 4 << 20})
			r = big.Before(context.Background(), 1, "cmd", []byte(`{}`))
			require.NoError(t, r.Err, "MaxResponseHeaderBytes raises the bound")
			assert.Equal(t, 200, r.Code)
		})
	}
	_, err := callback.New(callback.Config{URL: "http://127.0.0.1:1/", MaxResponseHeaderBytes: -1})
	assert.ErrorIs(t, err, callback.ErrInvalidConfig)
}

// TrustBodies sends a body as it is, unchecked, for IM servers that
// marshal bodies themselves; an empty body is still refused.
func TestTrustBodies(t *testing.T) {
	b := newBackend(t, answerJSON(200, `{"code":200}`))
	d, _ := newDispatcher(t, callback.Config{URL: b.URL, TrustBodies: true})
	bad := []byte("{\"a\":\"\xff\"")
	r := d.Before(context.Background(), 1, "cmd", bad)
	require.NoError(t, r.Err, "an unchecked body is sent")
	require.NoError(t, d.After(context.Background(), 1, "cmd", bad))
	require.NoError(t, d.Close(context.Background()))
	got := b.requests()
	require.Len(t, got, 2, "Before and After both sent")
	for _, req := range got {
		assert.Equal(t, bad, req.Body, "the body goes out as given")
	}
	d2, _ := newDispatcher(t, callback.Config{URL: b.URL, TrustBodies: true})
	assert.ErrorIs(t, d2.Before(context.Background(), 1, "cmd", nil).Err, callback.ErrInvalidBody, "an empty body is still refused")
	assert.ErrorIs(t, d2.After(context.Background(), 1, "cmd", nil), callback.ErrInvalidBody, "an empty body is still refused")
}
