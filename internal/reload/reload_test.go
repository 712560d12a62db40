package reload

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parseWord(path string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		w := strings.TrimSpace(string(b))
		if w == "" || strings.ContainsAny(w, " \n") {
			return "", errors.New("want one word")
		}
		return w, nil
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRefusesWhatDoesNotParse(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load("X_FILE", parseWord(filepath.Join(dir, "missing")), filepath.Join(dir, "missing")); err == nil ||
		!strings.HasPrefix(err.Error(), "X_FILE: stat ") {
		t.Errorf("a missing file: error %v, want it named", err)
	}
	bad := filepath.Join(dir, "bad")
	write(t, bad, "two words")
	if _, err := Load("X_FILE", parseWord(bad), bad); err == nil || err.Error() != "want one word" {
		t.Errorf("a bad file: error %v", err)
	}
}

func TestChangesAreSeenHoweverTheFileIsReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "word")
	write(t, path, "first")
	f, err := Load("X_FILE", parseWord(path), path)
	if err != nil {
		t.Fatal(err)
	}
	var reloads []string
	w := NewWatcher(nil, func(name string, err error) {
		reloads = append(reloads, name+":"+errString(err))
	}, f)
	check := func(step, want string) {
		t.Helper()
		w.CheckAll()
		if got := f.Current(); got != want {
			t.Fatalf("%s: Current = %q, want %q", step, got, want)
		}
	}
	check("unchanged", "first")
	if len(reloads) != 0 {
		t.Fatalf("reloads %v before any change", reloads)
	}

	write(t, path, "second!") // in place, another size
	check("written in place", "second!")

	write(t, filepath.Join(dir, "new"), "third")
	if err := os.Rename(filepath.Join(dir, "new"), path); err != nil {
		t.Fatal(err)
	}
	check("renamed over", "third")

	// Kubernetes: path is a link to ..data/word, ..data a link to a
	// timestamped directory, swapped for a new one.
	k8s := filepath.Join(dir, "k8s")
	for _, v := range []string{"v1", "v2"} {
		if err := os.MkdirAll(filepath.Join(k8s, v), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(k8s, "v1", "word"), "fourth")
	write(t, filepath.Join(k8s, "v2", "word"), "fifth!") // another inode, maybe the same mtime
	must(t, os.Symlink("v1", filepath.Join(k8s, "..data")))
	must(t, os.Symlink(filepath.Join("..data", "word"), filepath.Join(k8s, "word")))
	linked := filepath.Join(k8s, "word")
	g, err := Load("Y_FILE", parseWord(linked), linked)
	must(t, err)
	must(t, os.Symlink("v2", filepath.Join(k8s, "..data_tmp")))
	must(t, os.Rename(filepath.Join(k8s, "..data_tmp"), filepath.Join(k8s, "..data")))
	if changed, err := g.Check(); !changed || err != nil || g.Current() != "fifth!" {
		t.Fatalf("after the link swap: changed %v, err %v, Current %q", changed, err, g.Current())
	}

	write(t, path, "not one word")
	check("a bad version keeps the last good", "third")
	check("a bad version is reported once", "third")
	write(t, path, "sixth")
	check("a good version after a bad one", "sixth")

	want := []string{"X_FILE:", "X_FILE:", "X_FILE:want one word", "X_FILE:"}
	if strings.Join(reloads, " ") != strings.Join(want, " ") {
		t.Errorf("reloads = %q, want %q", reloads, want)
	}
}

func TestFreshChecksBeforeAnswering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	write(t, path, "old")
	f, err := Load("S_FILE", parseWord(path), path)
	must(t, err)
	write(t, path, "new-one")
	if got := f.Fresh(); got != "new-one" {
		t.Errorf("Fresh = %q, want new-one", got)
	}
	must(t, os.Remove(path))
	if got := f.Fresh(); got != "new-one" {
		t.Errorf("after removal: Fresh = %q, want the last good new-one", got)
	}
	if got := Static(42).Fresh(); got != 42 {
		t.Errorf("Static(42).Fresh() = %d", got)
	}
}

func TestChangedComparesIdentityTimeAndSize(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "x")
	write(t, b, "x")
	ia, _ := os.Stat(a)
	ib, _ := os.Stat(b)
	if !Changed(nil, ia) || Changed(ia, ia) || !Changed(ia, ib) {
		t.Error("Changed: want true for nil and for another file, false for the same")
	}
	must(t, os.Chtimes(a, time.Now(), time.Now().Add(time.Hour)))
	ia2, _ := os.Stat(a)
	if !Changed(ia, ia2) {
		t.Error("Changed: want true for a new modification time")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
