package durableobject

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/pkg/cloudflare"
	"github.com/cfbackup/cfbackup/pkg/errclass"
	"github.com/cfbackup/cfbackup/pkg/source"
)

func init() { source.Register(func() source.Component { return &component{} }) }

// ObjectLister lists a namespace's objects (the Cloudflare REST API; *cloudflare.Client has it).
type ObjectLister interface {
	ListObjects(ctx context.Context, namespaceID string, limit int, fn func([]cloudflare.DurableObject) error) error
}

// NamespaceAPI is what the component reads of the account: its namespaces and their objects.
type NamespaceAPI interface {
	ObjectLister
	ListNamespaces(ctx context.Context) ([]cloudflare.Namespace, error)
	ResolveNamespace(ctx context.Context, ref string) (cloudflare.Namespace, error)
}

// component is Durable Objects in the registry: one value per command, holding its flags.
type component struct {
	// backup: --do-namespace (repeatable); restore: --do-namespace (one)
	namespaces  []string
	namespace   string
	objectIDs   []string
	idsFrom     string
	concurrency int
	chunkBytes  int
	workerURL   string // bound for the config (worker_url); read through Env.Setting
	// restore into another namespace: --to-do-namespace, --do-id-map, --skip-unplaceable
	toNamespace     string
	idMapFile       string
	skipUnplaceable bool
	idMap           IDMap

	// want holds the object IDs --object-id or --object-ids-from chose (CheckFlags).
	want map[string]bool
	// api replaces Env.Cloudflare in tests.
	api NamespaceAPI
}

func (c *component) Name() string  { return Component }
func (c *component) Title() string { return "Durable Object namespace" }

const workerURLUsage = "URL of the Worker that routes /__cfbackup/ to the Durable Objects (or CFBACKUP_WORKER_URL)"

// Flags binds --do-namespace, --do-concurrency and --worker-url, and restore's --object-id,
// --object-ids-from and hidden --do-chunk-bytes. The Worker secret is never a flag.
func (c *component) Flags(verb source.Verb, fs *pflag.FlagSet) {
	switch verb {
	case source.VerbBackup:
		fs.StringSliceVar(&c.namespaces, "do-namespace", nil, "Durable Object namespace (name, id or class); repeat for several (default: every namespace)")
		fs.IntVar(&c.concurrency, "do-concurrency", 4, "Durable Objects exported at once")
	case source.VerbRestore:
		fs.StringVar(&c.namespace, "do-namespace", "", "with --component do: the namespace in the snapshot (name, id or class; default: all)")
		fs.StringSliceVar(&c.objectIDs, "object-id", nil, "with --component do: restore only these object IDs (repeatable)")
		fs.StringVar(&c.idsFrom, "object-ids-from", "", "with --component do: restore the object IDs listed in FILE (one per line, # comments)")
		fs.IntVar(&c.concurrency, "do-concurrency", 4, "with --component do: objects restored at once")
		fs.StringVar(&c.toNamespace, "to-do-namespace", "", "with --component do: restore into this namespace of the account (name, id or class), e.g. in a new account; objects are re-created by their recorded name or --do-id-map")
		fs.StringVar(&c.idMapFile, "do-id-map", "", "with --to-do-namespace: FILE mapping old object IDs to new ones ('<old id> <new id>' or '<old id> name:<name>' per line)")
		fs.BoolVar(&c.skipUnplaceable, "skip-unplaceable", false, "with --to-do-namespace: leave out objects that have neither a recorded name nor a --do-id-map entry (default: refuse)")
		fs.IntVar(&c.chunkBytes, "do-chunk-bytes", DefaultChunkBytes, "largest import request body")
		_ = fs.MarkHidden("do-chunk-bytes")
	default:
		return
	}
	if fs.Lookup("worker-url") == nil {
		fs.StringVar(&c.workerURL, "worker-url", "", workerURLUsage)
	}
}

// CheckFlags refuses a bad restore before anything is read: options of other targets, conflicting
// selectors, malformed object IDs. It reads --object-ids-from.
func (c *component) CheckFlags(verb source.Verb, fs *pflag.FlagSet) error {
	if verb != source.VerbRestore {
		return nil
	}
	for _, f := range []string{"to-file", "to-database", "in-place", "table"} {
		if changed(fs, f) {
			return usage(errors.New("--to-file, --to-database, --in-place and --table are D1 options; a Durable Object is restored into the object it came from (IDs are bound to their namespace)"))
		}
	}
	for _, f := range []string{"to-dir", "prefix"} {
		if changed(fs, f) {
			return usage(fmt.Errorf("--%s is not an option of --component do: a Durable Object is restored into the object it came from", f))
		}
	}
	if len(c.objectIDs) > 0 && c.idsFrom != "" {
		return usage(errors.New("use --object-id or --object-ids-from, not both"))
	}
	if err := checkConcurrency(c.concurrency); err != nil {
		return err
	}
	if err := c.checkPlacementFlags(); err != nil {
		return err
	}
	ids := c.objectIDs
	if c.idsFrom != "" {
		var err error
		if ids, err = readIDs(c.idsFrom); err != nil {
			return err
		}
		if len(ids) == 0 {
			return usage(fmt.Errorf("--object-ids-from %s lists no object ID", c.idsFrom))
		}
	}
	c.want = map[string]bool{}
	for _, id := range ids {
		id = strings.ToLower(strings.TrimSpace(id))
		if !ValidObjectID(id) {
			return usage(fmt.Errorf("object ID %q: a Durable Object ID is 64 hex digits (as listed by 'cfbackup list' or the Cloudflare dashboard)", id))
		}
		c.want[id] = true
	}
	return nil
}

// checkPlacementFlags checks --to-do-namespace, --do-id-map and --skip-unplaceable and reads the map.
func (c *component) checkPlacementFlags() error {
	if c.toNamespace == "" && (c.idMapFile != "" || c.skipUnplaceable) {
		return usage(errors.New("--do-id-map and --skip-unplaceable place objects in another namespace: use them with --to-do-namespace NAMESPACE"))
	}
	c.idMap = nil
	if c.idMapFile != "" {
		m, err := ReadIDMap(c.idMapFile)
		if err != nil {
			return err
		}
		c.idMap = m
	}
	return nil
}

// changed reports whether the flag name was set (fs may be nil).
func changed(fs *pflag.FlagSet, name string) bool {
	if fs == nil {
		return false
	}
	fl := fs.Lookup(name)
	return fl != nil && fl.Changed
}

func checkConcurrency(n int) error {
	if n < 1 || n > 64 {
		return usage(fmt.Errorf("--do-concurrency %d: use 1 to 64", n))
	}
	return nil
}

// usage marks an error in how the command was called.
func usage(err error) error { return errclass.Wrap(errclass.Usage, err) }

// readIDs reads one object ID per line, skipping blank lines and # comments.
func readIDs(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, usage(fmt.Errorf("--object-ids-from: %w", err))
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// cloudflareAPI is the account's REST API (Env.Cloudflare) as the component uses it.
func (c *component) cloudflareAPI(env source.Env) (NamespaceAPI, error) {
	if c.api != nil {
		return c.api, nil
	}
	cf, err := env.Cloudflare()
	if err != nil {
		return nil, err
	}
	return cf, nil
}

// WorkerClient builds the client of the Worker module from the settings worker_url
// (CFBACKUP_WORKER_URL or --worker-url) and worker_secret (CFBACKUP_WORKER_SECRET), or the file
// worker_secret_file names (CFBACKUP_WORKER_SECRET_FILE). The secret is never a flag, and never
// printed: errors name the setting, not its value.
func WorkerClient(env source.Env) (*Client, error) {
	secret := env.Setting("worker_secret")
	if file := env.Setting("worker_secret_file"); secret == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usage(fmt.Errorf("worker secret file: %v", err))
		}
		secret = strings.TrimSpace(string(b))
	}
	cl, err := NewClient(env.Setting("worker_url"), secret)
	if err != nil {
		return nil, usage(err)
	}
	return cl, nil
}
