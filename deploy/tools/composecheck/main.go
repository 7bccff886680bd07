// composecheck loads a Compose file the way `docker compose` does (the compose-spec reference
// loader: schema validation, interpolation, env files, merges) and prints the resolved project
// as JSON. It needs no Docker engine and no network.
//
//	composecheck [-env-file FILE] docker-compose.yml [override.yml ...]
//
// Exit status 0 with the project on stdout; 1 with the reason on stderr.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	envFile := flag.String("env-file", "", "an env file for interpolation (default: .env beside the first file, when it exists)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: composecheck [-env-file FILE] COMPOSE_FILE...")
		os.Exit(2)
	}
	options := []cli.ProjectOptionsFn{cli.WithOsEnv}
	if *envFile != "" {
		options = append(options, cli.WithEnvFiles(*envFile))
	}
	options = append(options, cli.WithDotEnv)
	opts, err := cli.NewProjectOptions(flag.Args(), options...)
	if err != nil {
		fail(err)
	}
	resolved, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := resolved.MarshalJSON()
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
