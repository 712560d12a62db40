//go:build !linux

package loadbench

import (
	"errors"
	"os"
	"os/exec"
	"time"
)

var terminate = os.Interrupt

func setParentDeathSignal(*exec.Cmd) {}

var errNotLinux = errors.New("loadbench: CPU and memory figures need Linux /proc")

// ProcessCPU is only available on Linux.
func ProcessCPU(int) (time.Duration, error) { return 0, errNotLinux }

// SelfCPU is only available on Linux.
func SelfCPU() (time.Duration, error) { return 0, errNotLinux }

// Memory is a process's resident memory.
type Memory struct {
	RSS int64 `json:"rss_bytes"`
	HWM int64 `json:"hwm_bytes"`
}

// ProcessMemory is only available on Linux.
func ProcessMemory(int) (Memory, error) { return Memory{}, errNotLinux }

// MachineBusy is only available on Linux.
func MachineBusy() (time.Duration, error) { return 0, errNotLinux }
