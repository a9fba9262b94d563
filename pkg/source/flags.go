package source

import "github.com/spf13/pflag"

// SharedStringArray binds a repeatable flag that several components read (restore --key: an R2
// object's key, a KV key), so a concept has one flag name across components: the first component to
// ask defines it, the others read the same one. get returns its values once the flags are parsed.
func SharedStringArray(fs *pflag.FlagSet, name, usage string) (get func() []string) {
	if fs.Lookup(name) == nil {
		fs.StringArray(name, nil, usage)
	}
	return func() []string {
		v, _ := fs.GetStringArray(name)
		return v
	}
}

// KeyUsage is the help of restore's shared --key flag.
const KeyUsage = "r2, kv: restore only this key (repeatable); kv: with --prefix, keys matching either"
