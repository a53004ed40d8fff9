// compose-check validates docker-compose files without a Docker engine (none runs where
// paystream's tests do). It loads each file with compose-go, the Compose Specification's
// own Go implementation, the loader `docker compose` itself uses: the file is validated
// against the compose-spec JSON schema (unknown keys, wrong types) and the resolved
// project is checked for consistency (depends_on targets, volumes, secrets and networks
// that services use must be declared).
//
// Usage: compose-check FILE...   Exit status 1 on the first invalid file.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check FILE...")
		os.Exit(2)
	}
	for _, file := range os.Args[1:] {
		// The project name is fixed so that the check does not depend on the directory;
		// relative paths (bind mounts, secret files) resolve from the file's directory.
		options, err := cli.NewProjectOptions([]string{file}, cli.WithName("paystream"), cli.WithOsEnv)
		if err != nil {
			fmt.Printf("compose-check: %s: %v\n", file, err)
			os.Exit(1)
		}
		project, err := options.LoadProject(context.Background())
		if err != nil {
			fmt.Printf("compose-check: %s: %v\n", file, err)
			os.Exit(1)
		}
		fmt.Printf("compose-check: %s: ok (%d services: %s)\n",
			file, len(project.Services), strings.Join(project.ServiceNames(), ", "))
	}
}
