//go:build unix && !linux

package main

import "syscall"

// childAttr puts the backend process in its own process group. Without
// Pdeathsig, the child ends when its stdin closes.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process group of the backend process pid.
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }
