"""Operating-system isolation for ``--sealed`` workers: Landlock, and Linux namespaces where allowed.

**Landlock** (Linux 5.13+, no privileges needed) is required: a process restricts itself, for good
and for every process it starts, to the file-system access granted here; nothing else can be
read, written, listed or executed. Its ABI version decides what more it closes: TCP ``bind`` and
``connect`` (ABI 4+), abstract Unix sockets and signals to processes outside the sandbox (ABI 6+).
The kernel also refuses sandboxed processes any change of their mount topology.

**Namespaces** (``unshare``, where unprivileged user namespaces are enabled) are added when the
kernel allows them: a new user namespace (no capabilities over the host), network namespace (no
network at all, UDP included), IPC namespace (no System V IPC or POSIX message queues shared with
any other process) and PID namespace (every process a worker leaves behind is killed with it).

What this does not close: timing and other side channels through shared hardware; without
namespaces, System V IPC, UDP and processes that outlive their worker; and everything outside the
worker (the engine runs its own, trusted, code unsandboxed).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# file-system access rights, by the ABI that introduced them
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR, _MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
_MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_READ = _EXECUTE | _READ_FILE | _READ_DIR
_WRITE = (_WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_DIR | _MAKE_REG | _MAKE_SOCK | _MAKE_FIFO | _MAKE_SYM
          | _MAKE_CHAR | _MAKE_BLOCK)

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x08000000, 0x10000000, 0x20000000, 0x40000000


class SandboxUnavailable(Exception):
    """This machine cannot sandbox a worker (no Landlock)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    """The C library, through the interpreter's own symbols (``find_library`` would start a compiler)."""
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version of this kernel (0: none, or not Linux)."""
    if platform.system() != "Linux":
        return 0
    version = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def unavailable() -> str | None:
    """Why ``--sealed`` cannot run here (None: it can)."""
    if platform.system() != "Linux":
        return f"--sealed needs Linux (Landlock); this is {platform.system()}"
    if landlock_abi() < 1:
        return ("--sealed needs Landlock (Linux 5.13 or newer, enabled in the kernel's LSM list: "
                "cat /sys/kernel/security/lsm); this kernel does not offer it")
    return None


@dataclass(frozen=True)
class Protection:
    """What a sandbox applied: the Landlock ABI and which namespaces a worker runs in."""

    landlock_abi: int
    namespaces: tuple[str, ...]

    def describe(self) -> str:
        closes = ["file system"] + (["TCP"] if self.landlock_abi >= 4 else []) + (
            ["abstract sockets", "signals"] if self.landlock_abi >= 6 else [])
        spaces = f"; namespaces: {', '.join(self.namespaces)}" if self.namespaces else "; no namespaces (not permitted here)"
        return f"Landlock ABI {self.landlock_abi} ({', '.join(closes)}){spaces}"


def restrict(read: Iterable[Path], write: Iterable[Path] = (), abi: int | None = None) -> None:
    """Restrict this thread (and every process it starts) to reading ``read`` (directories or files)
    and reading and writing ``write``; with ABI 4+ no TCP, with ABI 6+ no abstract sockets or signals
    beyond its own sandbox. Can only narrow what an earlier call allowed. Raises when it fails."""
    libc = _libc()
    abi = landlock_abi() if abi is None else abi
    if abi < 1:
        raise SandboxUnavailable(unavailable() or "no Landlock")
    handled = _READ | _WRITE | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0) | (_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(handled, (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0,
                        (_SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL) if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    try:
        for path, access in [*((p, _READ) for p in read), *((p, _READ | _WRITE | (_TRUNCATE if abi >= 3 else 0)) for p in write)]:
            if not os.path.exists(path):
                continue
            directory = os.path.isdir(path)
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rights = access if directory else access & (_EXECUTE | _READ_FILE | _WRITE_FILE | _TRUNCATE)
                rule = _PathBeneathAttr(rights & handled, fd)
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}: {os.strerror(ctypes.get_errno())}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) < 0:
            raise OSError(ctypes.get_errno(), f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(ruleset)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every capability (those a user namespace granted this process); raises when it fails."""
    data = (_CapData * 2)()
    if _libc().capset(ctypes.byref(_CapHeader(0x20080522, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), f"capset: {os.strerror(ctypes.get_errno())}")


def unshare(flags: int) -> bool:
    """Move this process into new namespaces (``CLONE_*`` flags); False when the kernel refuses."""
    return _libc().unshare(ctypes.c_int(flags)) == 0


def map_root(uid: int, gid: int) -> None:
    """In a new user namespace: map root inside to ``uid`` / ``gid`` outside (what ``unshare -r`` does)."""
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
