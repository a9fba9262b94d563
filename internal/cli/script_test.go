package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cfbackup/cfbackup/internal/cftest"
	"github.com/cfbackup/cfbackup/internal/cli"
	"github.com/cfbackup/cfbackup/internal/seed"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cfbackup": func() { os.Exit(cli.Main()) },
	})
}

// scriptDirs is the one table of user-story folders; every folder listed here runs, none silently skipped.
var scriptDirs = []string{"../../testdata/script"}

// TestScripts runs the CLI user stories under testdata/script against a fresh emulated Cloudflare
// account per script, seeded with a small OIDC-shaped D1 database named "app".
func TestScripts(t *testing.T) {
	for _, dir := range scriptDirs {
		testscript.Run(t, testscript.Params{
			Dir:                 dir,
			RequireExplicitExec: false,
			Setup: func(env *testscript.Env) error {
				setup := filepath.Join(env.WorkDir, ".emu")
				if err := os.MkdirAll(setup, 0o755); err != nil {
					return err
				}
				seedPath := filepath.Join(setup, "seed.sqlite")
				if _, err := seed.Generate(context.Background(), seedPath, seed.Options{Users: 25, Seed: 3}); err != nil {
					return err
				}
				srv, base := cftest.Start(env.T().(testing.TB), cftest.Options{DataDir: filepath.Join(setup, "data")})
				uuid, err := srv.AddDatabase("app", seedPath)
				if err != nil {
					return err
				}
				env.Values[emuKey{}] = srv
				env.Setenv("CFBACKUP_CLOUDFLARE_API_URL", base+"/client/v4")
				env.Setenv("CLOUDFLARE_ACCOUNT_ID", srv.AccountID())
				env.Setenv("CLOUDFLARE_API_TOKEN", "test-token")
				env.Setenv("APP_UUID", uuid)
				env.Setenv("EMU_DIR", filepath.Join(setup, "data"))
				env.Setenv("SEED_DB", seedPath)
				env.Setenv("HOME", env.WorkDir)
				env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, ".config"))
				env.Values[scriptT{}] = env.T()
				return nil
			},
			Cmds: withCmds(approvalCmds, withCmds(tierCmds, withCmds(rolesCmds, withCmds(readmeCmds, withCmds(visibCmds, withCmds(doctorCmds, withCmds(kvCmds, withCmds(r2Cmds, map[string]func(ts *testscript.TestScript, neg bool, args []string){
				"emu-workers": emuWorkers,
				// corrupt FILE OFFSET: flip one byte of a stored object, as a failing disk would.
				"corrupt": func(ts *testscript.TestScript, neg bool, args []string) {
					if len(args) != 2 {
						ts.Fatalf("usage: corrupt FILE OFFSET")
					}
					p := ts.MkAbs(args[0])
					b, err := os.ReadFile(p)
					ts.Check(err)
					off, err := strconv.Atoi(args[1])
					ts.Check(err)
					if off < 0 {
						off = len(b) + off
					}
					b[off] ^= 0x20
					ts.Check(os.Chmod(p, 0o644))
					ts.Check(os.WriteFile(p, b, 0o644))
				},
			})))))))),
		})
	}
}
