package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cfbackup/cfbackup/pkg/doctor"
	"github.com/cfbackup/cfbackup/pkg/source"
)

// doctorRole resolves --role; an unknown name is a usage error listing the roles.
func doctorRole(name string) (*doctor.Role, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return nil, nil
	}
	r, ok := doctor.LookupRole(name)
	if !ok {
		return nil, usageError{fmt.Errorf("--role %q: no such role; choose from %s (docs/ROLES.md)", name, strings.Join(doctor.RoleNames(), ", "))}
	}
	return &r, nil
}

// doctorRoleFindings finds what this host holds (by setting and file, never by value) and checks it
// against the role.
func doctorRoleFindings(ctx context.Context, f *Factory, role doctor.Role) []source.Finding {
	h := doctor.RoleHost{
		Identity:     heldIdentity(f),
		WriterSecret: heldWriterSecret(f),
		WorkerSecret: heldWorkerSecret(f),
		R2Keys:       heldR2Keys(f),
		SigningKey:   heldSigningKey(f),
		TokenSet:     f.cfg.CloudflareAPIToken != "",
		Cloudflare:   f.Cloudflare,
	}
	if st, err := f.Store(ctx); err == nil {
		h.Store = st
	}
	return doctor.CheckRole(ctx, role, h)
}

// heldIdentity lists where this host is given an age identity: the setting cfbackup reads
// (CFBACKUP_IDENTITY_FILE or identity_file) and the variable the scheduling examples' wrappers
// write it from (CFBACKUP_IDENTITY).
func heldIdentity(f *Factory) []doctor.Held {
	var out []doctor.Held
	if f.cfg.IdentityFile != "" {
		out = append(out, settingHeld(f, "CFBACKUP_IDENTITY_FILE", "identity_file", "file "+filepath.Base(f.cfg.IdentityFile),
			"and move the identity file off this host (keep it offline or on the restore host)"))
	}
	if f.Getenv("CFBACKUP_IDENTITY") != "" {
		out = append(out, doctor.Held{Source: "CFBACKUP_IDENTITY", Fix: "drop CFBACKUP_IDENTITY from this host's environment (a CI secret: remove it from this job)"})
	}
	return out
}

// heldWriterSecret lists where this host holds the writer secret: writer_key_file, the variable the
// wrappers write it from, and the files 'init' leaves in the user's configuration directory.
func heldWriterSecret(f *Factory) []doctor.Held {
	var out []doctor.Held
	if f.cfg.WriterKeyFile != "" {
		out = append(out, settingHeld(f, "CFBACKUP_WRITER_KEY_FILE", "writer_key_file", "file "+filepath.Base(f.cfg.WriterKeyFile),
			"and delete the file from this host"))
	}
	if f.Getenv("CFBACKUP_WRITER_KEY") != "" {
		out = append(out, doctor.Held{Source: "CFBACKUP_WRITER_KEY", Fix: "drop CFBACKUP_WRITER_KEY from this host's environment"})
	}
	if dir, err := os.UserConfigDir(); err == nil {
		files, _ := filepath.Glob(filepath.Join(dir, "cfbackup", "writer-*.key"))
		for _, p := range files {
			out = append(out, doctor.Held{Source: "file " + p, Fix: "delete " + p + " ('cfbackup init' wrote it; keep a copy only where the role needs it)"})
		}
	}
	return out
}

// settingHeld names a path setting by where it came from: the environment variable when set, else
// the config file's key.
func settingHeld(f *Factory, env, key, file, also string) doctor.Held {
	if f.Getenv(env) != "" {
		return doctor.Held{Source: env + " (" + file + ")", Fix: "drop " + env + " from this host's environment " + also}
	}
	return doctor.Held{Source: key + " in the config file (" + file + ")", Fix: "remove " + key + " from the config file " + also}
}

// heldWorkerSecret: the production Worker module's secret (component do).
func heldWorkerSecret(f *Factory) []doctor.Held {
	var out []doctor.Held
	if f.cfg.WorkerSecret != "" {
		out = append(out, doctor.Held{Source: "CFBACKUP_WORKER_SECRET", Fix: "drop CFBACKUP_WORKER_SECRET from this host's environment"})
	}
	if f.cfg.WorkerSecretFile != "" {
		out = append(out, settingHeld(f, "CFBACKUP_WORKER_SECRET_FILE", "worker_secret_file", "file "+filepath.Base(f.cfg.WorkerSecretFile), "and delete the file from this host"))
	}
	return out
}

// heldR2Keys: the S3 keys of the R2 source buckets (component r2).
func heldR2Keys(f *Factory) []doctor.Held {
	if f.cfg.R2AccessKeyID == "" {
		return nil
	}
	return []doctor.Held{{Source: "CFBACKUP_R2_ACCESS_KEY_ID", Fix: "drop CFBACKUP_R2_ACCESS_KEY_ID and CFBACKUP_R2_SECRET_ACCESS_KEY from this host's environment"}}
}

// heldSigningKey: the operator's approval signing key (signing_key_file, docs/APPROVAL.md).
func heldSigningKey(f *Factory) []doctor.Held {
	if f.cfg.SigningKeyFile == "" {
		return nil
	}
	return []doctor.Held{settingHeld(f, "CFBACKUP_SIGNING_KEY_FILE", "signing_key_file", "file "+filepath.Base(f.cfg.SigningKeyFile),
		"and move the key to the approver's own machine (an approval signed from here could come from whoever takes this host)")}
}
