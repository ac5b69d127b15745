package tiered

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Errors returned by Strata. Compare with errors.Is: they are usually wrapped
// with the key or the cause.
var (
	// ErrNotFound means there is no value: a loader returns it for "no such
	// record", and Get returns it on a miss with a nil loader or on a
	// negative-cached miss.
	ErrNotFound = errors.New("tiered: not found")
	// ErrInvalidKey rejects an empty key or one longer than MaxKeyLength.
	ErrInvalidKey = errors.New("tiered: invalid key")
	// ErrInvalidNamespace rejects an empty namespace, one longer than
	// MaxNamespaceLength, or one containing '{', '}' or '#'.
	ErrInvalidNamespace = errors.New("tiered: invalid namespace")
	// ErrValueTooLarge rejects a value whose encoded form exceeds
	// Options.MaxValueSize.
	ErrValueTooLarge = errors.New("tiered: value too large")
	// ErrClosed is returned by every call after Client.Close.
	ErrClosed = errors.New("tiered: client closed")
)

// PanicError is the error returned when a user callback panicked: a loader,
// Options.Tags, the Codec or Options.Writer, on the caller's goroutine or a
// background one (a refresh). It keeps the panic value and the stack of the
// goroutine that panicked.
type PanicError struct {
	Value any
	Stack []byte
	// Callback names what panicked: "loader", "Tags", "Codec" or "Writer".
	Callback string
}

// Error implements error.
// Error is one line, without the stack (which stays in Stack): a handler
// that returns err.Error() to its client does not leak it.
func (e *PanicError) Error() string {
	return fmt.Sprintf("tiered: %s panicked: %v", e.Callback, e.Value)
}

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// recoverInto turns a loader's panic into a *PanicError stored in *err. It
// must be deferred directly.
func recoverInto(err *error) {
	if r := recover(); r != nil {
		*err = &PanicError{Value: r, Stack: debug.Stack(), Callback: "loader"}
	}
}

// recoverCallback is recoverInto for the callback named name. It must be
// deferred directly.
func recoverCallback(name string, err *error) {
	if r := recover(); r != nil {
		*err = &PanicError{Value: r, Stack: debug.Stack(), Callback: name}
	}
}
