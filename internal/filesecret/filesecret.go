// Package filesecret reads a secret from a file and reads it again when the
// file changes, as Kubernetes does when it rotates a mounted Secret by
// swapping a symlink to a new file.
package filesecret

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// File is a secret kept in a file.
type File struct {
	path string

	mu    sync.Mutex
	info  os.FileInfo // of the file last read; nil before the first read
	value string
}

// New returns the secret in path; nothing is read until Value.
func New(path string) *File { return &File{path: path} }

// Value returns the file's content without surrounding white space (editors
// and `echo` end files with a newline that is no part of the secret). The
// file is read again only when it is another file, or was modified: a stat
// is cheap next to the request the secret authenticates.
func (f *File) Value() (string, error) {
	info, err := os.Stat(f.path) // follows the symlink, as a read does
	if err != nil {
		return "", fmt.Errorf("filesecret: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !Changed(f.info, info) {
		return f.value, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("filesecret: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", errors.New("filesecret: " + f.path + " is empty")
	}
	f.info, f.value = info, v
	return v, nil
}

// Changed reports whether cur is another file than prev (nil: never read),
// by device and inode, or the same file with another modification time or
// size. Kubernetes swaps a symlink to rotate a mounted file, which changes
// the first; an in-place rewrite changes the others.
func Changed(prev, cur os.FileInfo) bool {
	return prev == nil || !os.SameFile(prev, cur) ||
		!prev.ModTime().Equal(cur.ModTime()) || prev.Size() != cur.Size()
}
