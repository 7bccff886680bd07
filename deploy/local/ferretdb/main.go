// Command ferretdb runs FerretDB v1 (MongoDB wire protocol) on its SQLite backend for the
// local, Docker-less stack. It embeds FerretDB through its public package because the
// upstream command panics when built with `go install` (it lacks its generated version file).
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dataDir := flag.String("data", "", "absolute directory for the SQLite databases (must exist)")
	flag.Parse()
	if *dataDir == "" {
		log.Fatal("ferretdb: -data is required")
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// WAL with synchronous=NORMAL: a commit no longer waits for fsync, which doubles single
	// writes and triples concurrent ones on this stack. A crash of any process loses nothing
	// committed; only a power cut can lose the last commits, which a local stack for
	// development, tests and demos can afford (production runs MongoDB).
	db, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dataDir + "/?_pragma=synchronous(normal)",
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("ferretdb listening on %s, data in %s", *listen, *dataDir)
	if err := db.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("ferretdb: %v", err)
	}
}
