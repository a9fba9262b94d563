package cftest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var objectFile = regexp.MustCompile(`^[0-9a-f]{64}\.sqlite$`)

// ObjectsFromState lists the objects a local workerd (wrangler dev --persist-to, miniflare
// durableObjectsPersist) keeps for one class: dir is <state>/<script>-<Class> (wrangler:
// <state>/v3/do/<script>-<Class>), one <object id>.sqlite per object that was ever touched. Use it
// with SetObjectLister so the REST listing follows the runtime's state; every file counts as stored data.
func ObjectsFromState(dir string) func() ([]DurableObject, error) {
	return func() ([]DurableObject, error) {
		ents, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var out []DurableObject
		for _, e := range ents {
			if objectFile.MatchString(e.Name()) {
				out = append(out, DurableObject{ID: strings.TrimSuffix(e.Name(), ".sqlite"), HasStoredData: true})
			}
		}
		return out, nil
	}
}

// StateDir is where a local workerd keeps class's objects under root (a persist directory).
func StateDir(root, script, class string) string { return filepath.Join(root, script+"-"+class) }
