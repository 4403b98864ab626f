package sandbox

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// watchContainerExit returns a channel closed when the detached container
// id's main process exits, watched through a pidfd: no engine client stays
// attached for it. It returns nil (never closed) when the process cannot
// be watched (an engine that reports no host PID, a kernel without
// pidfds); the container then counts as alive.
func watchContainerExit(ctx context.Context, rt *Runtime, id string) <-chan struct{} {
	out, err := rt.output(ctx, "inspect", "--format", "{{.State.Pid}}", id)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		defer unix.Close(fd)
		pollExit(fd, time.Time{})
	}()
	return gone
}

// pollExit waits until the process behind pidfd fd has exited (a pidfd is
// readable then), or until deadline when it is not zero.
func pollExit(fd int, deadline time.Time) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		timeout := -1
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return
			}
			timeout = int(left.Milliseconds()) + 1
		}
		if _, err := unix.Poll(fds, timeout); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// gone reports whether the spare's network holder has exited.
func (sp *spare) gone() bool {
	if sp.holderGone == nil {
		return false
	}
	select {
	case <-sp.holderGone:
		return true
	default:
		return false
	}
}
