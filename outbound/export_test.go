package outbound

// loadOptions turns an environment into Options as config.Load does. The
// config package imports this one, so this package's own tests cannot
// import it; bridge_test.go, in package outbound_test, which can, sets it.
var loadOptions func(environ map[string]string) (*Options, error)

// SetLoadOptions sets loadOptions.
func SetLoadOptions(f func(environ map[string]string) (*Options, error)) { loadOptions = f }
