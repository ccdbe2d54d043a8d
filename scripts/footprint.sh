#!/usr/bin/env bash
# Prints what importing imcallback costs a user's module: for a program that
# imports only the root package, one that imports only receiver, and one
# that adds natsqueue, the modules `go list -m all` lists, the third-party
# packages linked in, and the stripped binary's size; and fails if the root
# package's module graph holds a heavy module or receiver links a package of
# OpenTelemetry, go-retryablehttp or gobreaker.
#
#   scripts/footprint.sh [REPO_DIR]   # default: this repository
#
# Each program is a scratch module in a temporary directory that requires
# the repository's modules through replace directives, as a user's would.
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GOWORK=off GOFLAGS=-mod=mod

prog() { # name, import lines, body
	local dir=$tmp/$1
	mkdir -p "$dir"
	{
		echo "module example.com/$1"
		echo
		echo "go 1.26.0"
		echo
		echo "replace github.com/imcallback/callback => $repo"
		[ -f "$repo/natsqueue/go.mod" ] && echo "replace github.com/imcallback/callback/natsqueue => $repo/natsqueue"
	} >"$dir/go.mod"
	printf 'package main\n\nimport (\n%s\n)\n\nfunc main() {\n%s\n}\n' "$2" "$3" >"$dir/main.go"
	(cd "$dir" && go mod tidy >/dev/null 2>&1 && go build -trimpath -ldflags='-s -w' -o "$1.bin" .)
	local mods pkgs size
	mods=$(cd "$dir" && go list -m all | tail -n +2 | grep -vc '^github.com/imcallback/' || true)
	pkgs=$(cd "$dir" && go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' . | grep -v '^github.com/imcallback/\|^example.com/' | grep -c . || true)
	size=$(stat -c %s "$dir/$1.bin")
	printf '%-10s %3d modules  %3d third-party packages  %5.1f MiB stripped\n' "$1" "$mods" "$pkgs" "$(awk -v s="$size" 'BEGIN{print s/1048576}')"
}

prog root '	"context"
	"github.com/imcallback/callback"' '	d, err := callback.New(callback.Config{URL: "http://127.0.0.1:1/"})
	if err == nil {
		d.Close(context.Background())
	}'
prog receiver '	"net/http"
	"github.com/imcallback/callback/receiver"' '	h, _ := receiver.New(receiver.Config{})
	_ = http.ListenAndServe("127.0.0.1:0", h)'
prog natsqueue '	"context"
	"github.com/imcallback/callback"
	"github.com/imcallback/callback/natsqueue"
	"github.com/nats-io/nats.go"' '	nc, _ := nats.Connect(nats.DefaultURL)
	q, err := natsqueue.New(context.Background(), nc, natsqueue.Options{})
	if err == nil {
		d, _ := callback.New(callback.Config{URL: "http://127.0.0.1:1/", Queue: q.ForDispatcher()})
		d.Close(context.Background())
	}'

status=0
heavy=$(cd "$tmp/root" && go list -m all | grep -E 'nats-io/nats-server|nats-io/nats.go|jackc/pgx|go-sql-driver/mysql|modernc.org/sqlite|chromedp|prometheus/client_golang' || true)
if [ -n "$heavy" ]; then
	echo "FAIL: importing the root package puts these modules in the user's graph:"
	echo "$heavy"
	status=1
fi
light=$(cd "$tmp/receiver" && go list -deps . | grep -E 'go.opentelemetry.io|go-retryablehttp|gobreaker' || true)
if [ -n "$light" ]; then
	echo "FAIL: receiver links:"
	echo "$light" | head -5
	status=1
fi
exit $status
