//go:build !linux

package redistest

import "syscall"

// sysProcAttr returns nil: parent-death signals are Linux-only, so elsewhere
// servers are only cleaned up through t.Cleanup.
func sysProcAttr() *syscall.SysProcAttr { return nil }
