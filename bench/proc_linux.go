package main

import "syscall"

// childAttr puts the backend process in its own process group and has the
// kernel kill it if the bench dies first.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills the process group of the backend process pid.
func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }
