package sqlapps_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/imcallback/callback"
	"github.com/imcallback/callback/sqlapps"
	"github.com/imcallback/callback/sqlapps/sqlite"
	"github.com/imcallback/callback/tencent"
)

func Example() {
	dir, err := os.MkdirTemp("", "sqlapps")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(filepath.Join(dir, "apps.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	ctx := context.Background()
	store, err := sqlapps.New(db, sqlapps.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	err = store.Set(ctx, sqlapps.App{ID: 1400000000, Endpoint: callback.Endpoint{
		URL:      "https://app.example/im/callback",
		Protocol: callback.Tencent,
		Secret:   "token",
		Commands: map[string]callback.Rule{tencent.C2CBeforeSendMsg: {FailClosed: true}},
	}})
	if err != nil {
		log.Fatal(err)
	}

	// A Dispatcher would call Resolve on every Before and After:
	// callback.New(callback.Config{Resolver: store, SSRFGuard: &callback.SSRFGuard{}}).
	ep, err := store.Resolve(ctx, 1400000000)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ep.URL, ep.Protocol, ep.Commands[tencent.C2CBeforeSendMsg].FailClosed)

	_, err = store.Resolve(ctx, 42)
	fmt.Println(err)
	// Output:
	// https://app.example/im/callback tencent true
	// sqlapps: app 42: callback: unknown app
}
