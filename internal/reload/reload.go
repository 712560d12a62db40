// Package reload keeps what the sidecar reads from files (rules, CA
// bundles, certificates, secrets, keys) current: a file is read and parsed
// once at start, where a bad one is a configuration error, and again when
// it changes, where a bad version is refused and the last good one stays.
//
// A change is seen by stat: another file (a renamed-over file, or the
// symbolic link swap by which Kubernetes updates ConfigMap and Secret
// volumes) or the same file with another size or modification time (a
// write in place). Stat sees all three, where inotify misses the swap of
// a link's target.
package reload

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authsidecar/authsidecar/internal/clock"
)

// File is a value parsed from one or more files, such as a certificate and
// its key, re-parsed when any of them changes.
type File[T any] struct {
	name  string
	paths []string
	parse func() (T, error)

	cur atomic.Pointer[T]

	mu    sync.Mutex // serializes checks
	infos []os.FileInfo
}

// Load reads the files now by calling parse, which reads paths itself, and
// returns a File holding the result. name says which setting the files are
// for (AUTHSIDECAR_ is left out: "INBOUND_RULES_FILE"); it labels metrics
// and log lines, and prefixes errors.
func Load[T any](name string, parse func() (T, error), paths ...string) (*File[T], error) {
	f := &File[T]{name: name, paths: paths, parse: parse}
	infos, err := f.stat()
	if err != nil {
		return nil, err
	}
	v, err := parse()
	if err != nil {
		return nil, err
	}
	f.infos = infos
	f.cur.Store(&v)
	return f, nil
}

// Static returns a File that always holds v, for values that come from no
// file (a secret given inline) and for tests.
func Static[T any](v T) *File[T] {
	f := &File[T]{}
	f.cur.Store(&v)
	return f
}

// Name is the setting the file is for.
func (f *File[T]) Name() string { return f.name }

// Current returns the last good value. It is one atomic load, for the
// request path; a Watcher keeps it current.
func (f *File[T]) Current() T { return *f.cur.Load() }

// Fresh checks the files first and returns the value then current: for
// values used now and then (a secret per token request), where a stat per
// use costs nothing and a rotation takes effect at once.
func (f *File[T]) Fresh() T {
	_, _ = f.Check()
	return f.Current()
}

// Check re-reads the files if they changed since the last read. It reports
// whether they had, and the error of a new version that did not parse (or
// of a file that went missing), in which case the last good value stays.
// A bad version is reported once, not at every check: it is read again
// only when it changes again.
func (f *File[T]) Check() (changed bool, err error) {
	if len(f.paths) == 0 {
		return false, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	infos, err := f.stat()
	if err != nil {
		if f.infos == nil {
			return false, nil // already reported
		}
		f.infos = nil
		return true, err
	}
	if !f.changed(infos) {
		return false, nil
	}
	f.infos = infos
	v, err := f.parse()
	if err != nil {
		return true, err
	}
	f.cur.Store(&v)
	return true, nil
}

func (f *File[T]) stat() ([]os.FileInfo, error) {
	infos := make([]os.FileInfo, len(f.paths))
	for i, p := range f.paths {
		info, err := os.Stat(p) // follows symbolic links, as a read does
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		infos[i] = info
	}
	return infos, nil
}

func (f *File[T]) changed(infos []os.FileInfo) bool {
	if f.infos == nil {
		return true
	}
	for i, cur := range infos {
		if Changed(f.infos[i], cur) {
			return true
		}
	}
	return false
}

// Changed reports whether cur is another file than prev (nil: never read),
// by device and inode, or the same file with another modification time or
// size.
func Changed(prev, cur os.FileInfo) bool {
	return prev == nil || !os.SameFile(prev, cur) ||
		!prev.ModTime().Equal(cur.ModTime()) || prev.Size() != cur.Size()
}

// Checker is what a Watcher polls: any File.
type Checker interface {
	Name() string
	Check() (changed bool, err error)
}

// Interval is how often a Watcher checks its files: SPEC promises that a
// change is noticed within about a second.
const Interval = time.Second

// Watcher checks files every Interval and tells OnReload about each change,
// good or bad.
type Watcher struct {
	files []Checker
	clock clock.Clock
	// OnReload is told the outcome of every re-read: err is nil when the
	// new version is in force. It runs on the watcher's goroutine.
	onReload func(name string, err error)
}

// NewWatcher returns a watcher of files on c (nil: the real clock) that
// reports to onReload (nil: nobody).
func NewWatcher(c clock.Clock, onReload func(name string, err error), files ...Checker) *Watcher {
	if onReload == nil {
		onReload = func(string, error) {}
	}
	return &Watcher{files: files, clock: clock.OrReal(c), onReload: onReload}
}

// Run checks the files until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	if len(w.files) == 0 {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.clock.After(Interval):
		}
		w.CheckAll()
	}
}

// CheckAll checks every file once.
func (w *Watcher) CheckAll() {
	for _, f := range w.files {
		if changed, err := f.Check(); changed {
			w.onReload(f.Name(), err)
		}
	}
}
