package release

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const root = "../.."

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// buildLine is the Dockerfile's build-stage `RUN … go build …` command.
func buildLine(t *testing.T, dockerfile string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(dockerfile, "\n") {
		if strings.HasPrefix(l, "RUN ") && strings.Contains(l, " go build ") {
			found = append(found, strings.TrimPrefix(l, "RUN "))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one RUN … go build line in the Dockerfile, found %d", len(found))
	}
	return found[0]
}

// TestDockerfileBuildStage runs the Dockerfile's go build line (docker cannot run here) for linux and
// checks the binary it makes: static, -trimpath, and reporting the version passed as a build arg.
func TestDockerfileBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cfbackup")
	}
	df := read(t, "Dockerfile")
	for _, want := range []string{"FROM --platform=$BUILDPLATFORM golang:1.26 AS build", "FROM gcr.io/distroless/static-debian12:nonroot",
		"COPY --from=build /out/cfbackup /usr/local/bin/cfbackup", "USER 65532:65532", `ENTRYPOINT ["cfbackup"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	line := buildLine(t, df)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/cfbackup", "-o /out/cfbackup"} {
		if !strings.Contains(line, want) {
			t.Errorf("the build line lacks %q: %s", want, line)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", strings.ReplaceAll(line, "/out/", out+"/"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+runtime.GOARCH, "VERSION=v0.0.0-dockerfile-check",
		"COMMIT=0123456789abcdef", "DATE=2026-12-03T00:00:00Z")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, b)
	}
	bin := filepath.Join(out, "cfbackup")
	meta, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath=true", "GOOS=linux"} {
		if !strings.Contains(string(meta), want) {
			t.Errorf("the image's binary was not built with %s:\n%s", want, meta)
		}
	}
	if runtime.GOOS != "linux" {
		return
	}
	b, err := exec.Command(bin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version, Commit, Date string }
	if err := json.Unmarshal(b, &v); err != nil || v.Version != "v0.0.0-dockerfile-check" || v.Commit != "0123456789abcdef" || v.Date != "2026-12-03T00:00:00Z" {
		t.Fatalf("version --json of the image's binary: %s (%v)", b, err)
	}
}

// TestSameStampEverywhere: the Makefile, goreleaser and the Dockerfile stamp the version into the same
// variables, so every artefact reports (and records in manifests) its release version.
func TestSameStampEverywhere(t *testing.T) {
	const pkg = "github.com/cfbackup/cfbackup/internal/buildinfo"
	for _, f := range []string{"Makefile", ".goreleaser.yaml", "Dockerfile"} {
		s := read(t, f)
		if f == "Makefile" {
			s = strings.ReplaceAll(s, "$(BUILDINFO)", pkg)
		}
		for _, v := range []string{".version=", ".commit=", ".date="} {
			if !strings.Contains(s, "-X "+pkg+v) {
				t.Errorf("%s does not stamp %s%s", f, pkg, v)
			}
		}
		if !strings.Contains(s, "-trimpath") {
			t.Errorf("%s builds without -trimpath", f)
		}
		if strings.Contains(s, "internal/cli.Version=") {
			t.Errorf("%s still stamps internal/cli.Version", f)
		}
	}
}
