//go:build linux

package redistest

import "syscall"

// sysProcAttr makes the kernel SIGKILL the server when the thread that
// started it dies, so a test binary that crashes (or is killed by `go test
// -timeout`) does not leave redis-server processes behind. The Go runtime
// does not retire threads that are not locked to a goroutine, so in practice
// this tracks the lifetime of the test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
