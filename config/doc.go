// Package config reads authsidecar's configuration from AUTHSIDECAR_*
// environment variables into typed values, once, at start.
//
// Load parses every section with caarlos0/env and validates the result as a
// whole, so that a bad configuration is reported in one go: every offending
// variable is named, with what is wrong with it. Secrets are typed so that
// printing the configuration redacts them.
package config
