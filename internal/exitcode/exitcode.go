// Package exitcode tells, by a process's exit code, a configuration error
// (bad flags or values: starting again will not help) from a failure that a
// restart may fix. The agent reads it from `sublet vcluster run`.
package exitcode

import (
	"errors"
	"fmt"
)

const (
	// Failure is any other error: a restart may fix it.
	Failure = 1
	// Config means the configuration was refused; the error message says
	// what to change.
	Config = 2
)

// ConfigError marks an error as a refused configuration.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigErr marks err as a configuration error; nil stays nil.
func ConfigErr(err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	return &ConfigError{Err: err}
}

// Configf is fmt.Errorf for a configuration error.
func Configf(format string, args ...any) error {
	return &ConfigError{Err: fmt.Errorf(format, args...)}
}

// Of returns the exit code for err: 0, Config or Failure.
func Of(err error) int {
	if err == nil {
		return 0
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return Config
	}
	return Failure
}
