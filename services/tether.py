"""Runs a command tied to its parent: when the parent dies, even by SIGKILL, the command gets SIGTERM.

Usage: python -m services.tether PARENT_PID COMMAND [ARG ...]

The launcher starts each child through this instead of a subprocess preexec_fn: a preexec_fn
makes Python run its fork hooks, gRPC's among them, in the forked child, and gRPC's poller then
aborts the child when subprocess closes its file descriptors (seen as SIGABRT at start-up).
"""

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> None:
    parent_pid, command = int(sys.argv[1]), sys.argv[2:]
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the launcher's own shutdown still stops its children
    if os.getppid() != parent_pid:
        sys.exit(0)  # the parent died before the tie was made
    os.execv(command[0], command)  # the death signal setting survives exec


if __name__ == "__main__":
    main()
