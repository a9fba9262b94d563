// Command cfbackup backs up and restores Cloudflare D1, Durable Objects and R2 data.
package main

import (
	"os"

	"github.com/cfbackup/cfbackup/internal/cli"
)

func main() {
	stop := startProfiles()
	code := cli.Main()
	stop()
	os.Exit(code)
}
