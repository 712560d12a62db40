package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureNodeDeps(t *testing.T) {
	write := func(t *testing.T, path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("a package.json that does not pin the package is an error", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "package.json"), `{"dependencies":{"other":"1.0.0"}}`)
		err := ensureNodeDeps(dir, "express")
		want := dir + "/package.json has no express dependency"
		if err == nil || err.Error() != want {
			t.Fatalf("ensureNodeDeps = %v, want %q", err, want)
		}
	})
	t.Run("the pinned version already installed needs no npm", func(t *testing.T) {
		dir := t.TempDir()
		write(t, filepath.Join(dir, "package.json"), `{"dependencies":{"express":"5.1.0"}}`)
		write(t, filepath.Join(dir, "node_modules", "express", "package.json"), `{"version":"5.1.0"}`)
		t.Setenv("PATH", t.TempDir()) // no npm to run
		if err := ensureNodeDeps(dir, "express"); err != nil {
			t.Fatalf("ensureNodeDeps = %v, want nil", err)
		}
	})
}
