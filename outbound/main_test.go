package outbound

import (
	"os"
	"testing"
)

// TestMain fixes where a herded fetch's token is refreshed at 80% of its
// lifetime, the latest point refreshDraw can give, so that tests can tell
// when the refresh loop wakes; the spread itself is tested with a draw of
// each test's own.
func TestMain(m *testing.M) {
	refreshDraw = func() float64 { return 1 }
	os.Exit(m.Run())
}
