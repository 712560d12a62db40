package filesecret_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/authsidecar/authsidecar/internal/filesecret"
)

func TestValueFollowsRotation(t *testing.T) {
	dir := t.TempDir()
	// Kubernetes mounts secrets as symlinks into a directory it swaps.
	if err := os.MkdirAll(filepath.Join(dir, "v1"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "v1", "secret"), []byte("first\n"), 0o600)
	link := filepath.Join(dir, "secret")
	if err := os.Symlink(filepath.Join(dir, "v1", "secret"), link); err != nil {
		t.Fatal(err)
	}
	f := filesecret.New(link)
	if v, err := f.Value(); err != nil || v != "first" {
		t.Fatalf("Value() = %q, %v, want first", v, err)
	}
	os.MkdirAll(filepath.Join(dir, "v2"), 0o700)
	os.WriteFile(filepath.Join(dir, "v2", "secret"), []byte("second"), 0o600)
	tmp := filepath.Join(dir, "secret.tmp")
	os.Symlink(filepath.Join(dir, "v2", "secret"), tmp)
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	if v, err := f.Value(); err != nil || v != "second" {
		t.Errorf("after the swap: Value() = %q, %v, want second", v, err)
	}
	// An in-place rewrite of the same size is seen through the mtime.
	os.WriteFile(filepath.Join(dir, "v2", "secret"), []byte("third!"), 0o600)
	future := time.Now().Add(time.Minute)
	os.Chtimes(filepath.Join(dir, "v2", "secret"), future, future)
	if v, err := f.Value(); err != nil || v != "third!" {
		t.Errorf("after a rewrite: Value() = %q, %v, want third!", v, err)
	}
}

func TestEmptyOrMissingFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	if _, err := filesecret.New(empty).Value(); err == nil {
		t.Error("an empty secret file was accepted")
	}
	if _, err := filesecret.New(filepath.Join(dir, "missing")).Value(); err == nil {
		t.Error("a missing secret file was accepted")
	}
}
