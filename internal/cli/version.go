package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cfbackup/cfbackup/internal/buildinfo"
)

// A build whose Version was not stamped into this package (the Makefile, goreleaser and the
// Dockerfile stamp internal/buildinfo) takes buildinfo's: the stamped release version, or the module
// version of a `go install …@vX` build. Manifests record "cfbackup " + Version (factory.go), so this
// runs before any command is built.
func init() {
	if Version == buildinfo.Dev {
		Version = buildinfo.Version()
	}
}

// versionMessage is this build's identity, with Version as this package reports it everywhere else.
func versionMessage() VersionMessage {
	in := buildinfo.Get()
	return VersionMessage{MessageType: msgVersion, Version: Version, Commit: in.Commit, Dirty: in.Dirty,
		Date: in.Date, GoVersion: in.GoVersion, Platform: in.Platform}
}

// NewCmdVersion prints which build is running. It needs no configuration, so it works (for a bug
// report) even where cfbackup.yaml is broken.
func NewCmdVersion(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, build date, Go version and platform",
		Long: `Print which build of cfbackup this is: the release version (for a 'go install …@vX' build the
module version), the commit and build date where known, the Go version and the platform. Manifests
record the same version as the tool that wrote a snapshot.`,
		Example: `  cfbackup version
  cfbackup version --json`,
		Args: cobra.NoArgs,
		// No configuration is read: the version is printed even where the configuration is broken.
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, _ []string) error {
			m := versionMessage()
			if f.jsonOut {
				return writeJSON(cmd.OutOrStdout(), m)
			}
			return printVersion(cmd, m)
		},
	}
}

func printVersion(cmd *cobra.Command, m VersionMessage) error {
	w := cmd.OutOrStdout()
	commit := m.Commit
	switch {
	case commit == "":
		commit = "unknown"
	case m.Dirty:
		commit += " (modified)"
	}
	date := m.Date
	if date == "" {
		date = "unknown"
	}
	_, err := fmt.Fprintf(w, "cfbackup %s\n  commit:   %s\n  built:    %s\n  go:       %s\n  platform: %s\n",
		m.Version, commit, date, m.GoVersion, m.Platform)
	return err
}
