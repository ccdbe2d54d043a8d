package main

import (
	"bufio"
	"fmt"
	"log"
	"os"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// kindNATS is the -serve kind of a NATS server with JetStream in a child
// process, for natsqueue.New over loopback TCP: as an IM node sees a NATS
// cluster, with the server's CPU out of the node's process.
const kindNATS = "nats"

// serveNATS is the child's side of a kindNATS backend: a JetStream server
// with file storage in a fresh directory on a loopback port, its URL
// printed as serve prints a backend's, and "0 0 cpu-ns" for each "stats"
// line on stdin until stdin closes.
func serveNATS() {
	dir, err := os.MkdirTemp("", "imcallback-bench-nats-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats server not ready in 10 s")
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, srv.ClientURL(), "-")
	_ = out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Fprintln(out, 0, 0, int64(cpuTime()))
		_ = out.Flush()
	}
}
