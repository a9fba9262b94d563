package cli

// The components this build backs up and restores. Each package registers itself (source.Register in
// its init); this import list is the one line a new component adds (docs/COMPONENTS.md).
import (
	_ "github.com/cfbackup/cfbackup/pkg/source/config"
	_ "github.com/cfbackup/cfbackup/pkg/source/d1"            // d1
	_ "github.com/cfbackup/cfbackup/pkg/source/durableobject" // do
	_ "github.com/cfbackup/cfbackup/pkg/source/kv"            // Workers KV (docs/KV.md)
	_ "github.com/cfbackup/cfbackup/pkg/source/r2"
)
