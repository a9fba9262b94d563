package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/cfbackup/cfbackup/internal/config"
	"github.com/cfbackup/cfbackup/pkg/store"
)

// storage_class and components.<name>.storage_class are normalised and checked against the classes
// of the repository's store: S3's seven, or R2's two when the S3 endpoint is R2's.
func TestStorageClasses(t *testing.T) {
	t.Chdir(t.TempDir())
	file := writeFile(t, "storage_class: standard-ia\ncomponents:\n  r2:\n    storage_class: glacier_ir\n  d1: {}\n")
	c := load(t, file, nil, envOf(t))
	if c.StorageClass != store.ClassStandardIA {
		t.Errorf("storage_class = %q", c.StorageClass)
	}
	if got := c.ComponentClasses(); len(got) != 1 || got["r2"] != store.ClassGlacierIR {
		t.Errorf("component classes = %v", got)
	}
	// The flag wins over the file, like every setting.
	fs := pflag.NewFlagSet("backup", pflag.ContinueOnError)
	fs.String("storage-class", "", "")
	if err := fs.Parse([]string{"--storage-class", "DEEP_ARCHIVE"}); err != nil {
		t.Fatal(err)
	}
	c = load(t, file, fs, envOf(t))
	if c.StorageClass != store.ClassDeepArchive {
		t.Errorf("flag: storage_class = %q", c.StorageClass)
	}

	bad := []struct {
		name, file string
		env        []string
		want       string
	}{
		{"unknown class from env", "", []string{"CFBACKUP_STORAGE_CLASS", "COLDLINE"}, `storage_class (--storage-class, CFBACKUP_STORAGE_CLASS): unknown storage class "COLDLINE": S3 accepts STANDARD, STANDARD_IA,`},
		{"unknown component class", "components:\n  kv:\n    storage_class: FROZEN\n", nil, "components.kv.storage_class"},
		{"R2 has no GLACIER", "storage_class: GLACIER\n", []string{"CFBACKUP_S3_ENDPOINT", "https://acct.r2.cloudflarestorage.com"}, "R2 accepts STANDARD, STANDARD_IA"},
		{"misspelt key in the block", "components:\n  r2:\n    storage_clas: STANDARD\n", nil, `unknown key "components.r2.storage_clas"`},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			file := ""
			if b.file != "" {
				file = writeFile(t, b.file)
			}
			_, err := config.Load(file, nil, envOf(t, b.env...))
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, b.want)
			}
		})
	}
	// R2's Infrequent Access is fine on R2.
	c = load(t, "", nil, envOf(t, "CFBACKUP_S3_ENDPOINT", "https://acct.r2.cloudflarestorage.com", "CFBACKUP_STORAGE_CLASS", "standard_ia"))
	if c.StorageClass != store.ClassStandardIA {
		t.Errorf("R2: storage_class = %q", c.StorageClass)
	}
}
