package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/authsidecar/authsidecar/config"
)

// TestReadmeDocumentsEveryVariable keeps the README's configuration
// reference complete: a variable the code reads must be listed there.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range config.Variables() {
		if !strings.Contains(string(readme), "`"+v+"`") {
			t.Errorf("README.md does not document `%s`", v)
		}
	}
}
