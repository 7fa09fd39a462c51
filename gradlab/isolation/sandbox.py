"""The operating system as the last wall around a program (Linux).

A worker child calls :func:`confine` after it has been forked and before any
program runs. Each layer works on its own, assuming the Python above it has
already been taken over:

* **resource limits** (``setrlimit``): CPU seconds (the kernel kills at the
  limit), address space, no file may grow (``RLIMIT_FSIZE`` 0), few open
  files, no core dumps;
* **Landlock**: no file or directory may be created, written, removed or
  renamed anywhere; reads only beneath the folders Python and torch load from
  (:func:`read_roots`), or anywhere in trusted mode; no TCP; no signals to
  processes outside the sandbox (the server, the worker parent);
* **seccomp**: a BPF filter that refuses ``execve``, ``fork`` and process
  clones (threads stay allowed), sockets, every syscall that creates, writes or
  removes files, opening a file for writing, mapping memory executable (so no
  shared library can be loaded), ``ptrace``, mounts, namespaces, ``kill``,
  BPF, keyrings and io_uring.
* a **network namespace** with no device but a loopback that is down
  (:func:`isolate_network`), entered by the child right after the fork.

Landlock and seccomp are kernel features: :func:`status` says which this
machine has. Why these and not bubblewrap alone: a sandbox entered with
``exec`` costs a fresh interpreter and a fresh ``import torch`` (2-3 s) per
run, where a forked child of a warm parent starts in milliseconds; Landlock
and seccomp can be entered by an already running process, need no root and
no setuid helper, and stack (a later layer can only take more away).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Mode = Literal["program", "trusted"]

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_PR_SET_PDEATHSIG = 1
_SECCOMP_MODE_FILTER = 2
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_THREAD = 0x00010000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class SandboxError(OSError):
    """A layer of the sandbox could not be put in place."""


@dataclass(frozen=True)
class Limits:
    """What one worker child may use. The CPU limit is the child's own CPU time."""

    cpu_seconds: float = 5.0
    memory_mb: int = 1024  # on top of what the warm worker already maps
    open_files: int = 64


@dataclass(frozen=True)
class Status:
    """Which layers this machine offers."""

    landlock: int  # Landlock ABI version, 0 without it
    seccomp: bool
    network_namespace: bool
    reason: str = ""  # what is missing, for a person

    @property
    def complete(self) -> bool:
        """Every layer is there: safe to serve other people's programs."""
        return self.landlock >= 1 and self.seccomp and self.network_namespace


# -- syscall numbers --------------------------------------------------------------------

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# name: (x86_64, aarch64); -1 where the architecture has no such call.
_NR: dict[str, tuple[int, int]] = {
    "open": (2, -1), "openat": (257, 56), "openat2": (437, 437), "creat": (85, -1),
    "mmap": (9, 222), "mprotect": (10, 226), "pkey_mprotect": (329, 288),
    "clone": (56, 220), "clone3": (435, 435), "fork": (57, -1), "vfork": (58, -1),
    "execve": (59, 221), "execveat": (322, 281),
    "socket": (41, 198), "socketpair": (53, 199), "connect": (42, 203), "bind": (49, 200),
    "listen": (50, 201), "accept": (43, 202), "accept4": (288, 242),
    "mkdir": (83, -1), "mkdirat": (258, 34), "rmdir": (84, -1), "unlink": (87, -1),
    "unlinkat": (263, 35), "rename": (82, -1), "renameat": (264, 38), "renameat2": (316, 276),
    "link": (86, -1), "linkat": (265, 37), "symlink": (88, -1), "symlinkat": (266, 36),
    "chmod": (90, -1), "fchmod": (91, 52), "fchmodat": (268, 53), "fchmodat2": (452, 452),
    "chown": (92, -1), "fchown": (93, 55), "lchown": (94, -1), "fchownat": (260, 54),
    "truncate": (76, 45), "ftruncate": (77, 46), "mknod": (133, -1), "mknodat": (259, 33),
    "utimensat": (280, 88), "utimes": (235, -1), "utime": (132, -1), "futimesat": (261, -1),
    "ptrace": (101, 117), "process_vm_readv": (310, 270), "process_vm_writev": (311, 271),
    "mount": (165, 40), "umount2": (166, 39), "pivot_root": (155, 41), "chroot": (161, 51),
    "unshare": (272, 97), "setns": (308, 268), "memfd_create": (319, 279),
    "memfd_secret": (447, 447), "bpf": (321, 280), "perf_event_open": (298, 241),
    "keyctl": (250, 219), "add_key": (248, 217), "request_key": (249, 218),
    "userfaultfd": (323, 282), "kexec_load": (246, 104), "init_module": (175, 105),
    "finit_module": (313, 273), "delete_module": (176, 106), "reboot": (169, 142),
    "sethostname": (170, 161), "setdomainname": (171, 162), "iopl": (172, -1),
    "ioperm": (173, -1), "acct": (163, 89), "settimeofday": (164, 170),
    "clock_settime": (227, 112), "personality": (135, 92), "swapon": (167, 224),
    "swapoff": (168, 225), "io_uring_setup": (425, 425), "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427), "kill": (62, 129), "tkill": (200, 130),
    "rt_sigqueueinfo": (129, 138), "rt_tgsigqueueinfo": (297, 240),
    "pidfd_open": (434, 434), "pidfd_send_signal": (424, 424), "pidfd_getfd": (438, 438),
    "name_to_handle_at": (303, 264), "open_by_handle_at": (304, 265),
    "fanotify_init": (300, 262), "inotify_init1": (294, 26), "quotactl": (179, 60),
    "vhangup": (153, 58), "mbind": (237, 235), "move_pages": (279, 239),
    "migrate_pages": (256, 238), "lookup_dcookie": (212, 18), "fsopen": (430, 430),
    "fsmount": (432, 432), "fsconfig": (431, 431), "move_mount": (429, 429),
    "open_tree": (428, 428), "mount_setattr": (442, 442), "landlock_create_ruleset": (444, 444),
    "landlock_add_rule": (445, 445),
    "setxattr": (188, 5), "lsetxattr": (189, 6), "fsetxattr": (190, 7),
    "removexattr": (197, 14), "lremovexattr": (198, 15), "fremovexattr": (199, 16),
}  # fmt: skip

#: Refused outright, whatever their arguments.
_DENIED = (
    "execve", "execveat", "fork", "vfork", "socket", "socketpair", "connect", "bind", "listen",
    "accept", "accept4", "creat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod",
    "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "truncate", "ftruncate",
    "mknod", "mknodat", "utimensat", "utimes", "utime", "futimesat", "ptrace",
    "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root", "chroot",
    "unshare", "setns", "memfd_create", "memfd_secret", "bpf", "perf_event_open", "keyctl",
    "add_key", "request_key", "userfaultfd", "kexec_load", "init_module", "finit_module",
    "delete_module", "reboot", "sethostname", "setdomainname", "iopl", "ioperm", "acct",
    "settimeofday", "clock_settime", "personality", "swapon", "swapoff", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "kill", "tkill", "rt_sigqueueinfo",
    "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "name_to_handle_at",
    "open_by_handle_at", "fanotify_init", "inotify_init1", "quotactl", "vhangup", "mbind",
    "move_pages", "migrate_pages", "lookup_dcookie", "fsopen", "fsmount", "fsconfig",
    "move_mount", "open_tree", "mount_setattr", "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr", "landlock_create_ruleset", "landlock_add_rule",
)  # fmt: skip
#: Answered "not implemented", so libc falls back to a call the filter can inspect.
_ENOSYS = ("clone3", "openat2")

# open(2) flags that write or create: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND, O_TMPFILE
_WRITE_FLAGS = {"x86_64": 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000,
                "aarch64": 0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000}  # fmt: skip
_PROT_EXEC = 0x4


def _arch() -> str:
    return platform.machine()


# -- seccomp ----------------------------------------------------------------------------

_BPF_LD_W_ABS, _BPF_JEQ, _BPF_JSET, _BPF_JGE, _BPF_RET = 0x20, 0x15, 0x45, 0x35, 0x06
_RET_ALLOW, _RET_KILL = 0x7FFF0000, 0x80000000
_RET_ERRNO = 0x00050000


def _errno(code: int) -> int:
    return _RET_ERRNO | (code & 0xFFFF)


def _arg_low(i: int) -> int:
    """Offset of the low 32 bits of syscall argument ``i`` in ``struct seccomp_data``."""
    return 16 + 8 * i  # little-endian on x86_64 and aarch64


def seccomp_filter(mode: Mode) -> list[tuple[int, int, int, int]]:
    """The BPF program, as (code, jt, jf, k) instructions, for this architecture.

    ``program`` mode also refuses executable memory; ``trusted`` mode lets
    pasted model code import compiled extension modules (it may read files).
    """
    arch = _arch()
    if arch not in _AUDIT_ARCH:
        raise SandboxError(errno.ENOSYS, f"no seccomp filter for the {arch} architecture")
    col = 0 if arch == "x86_64" else 1
    nr = {name: pair[col] for name, pair in _NR.items() if pair[col] >= 0}
    deny = _errno(errno.EPERM)
    prog: list[tuple[int, int, int, int]] = [
        (_BPF_LD_W_ABS, 0, 0, 4),  # arch
        (_BPF_JEQ, 1, 0, _AUDIT_ARCH[arch]),
        (_BPF_RET, 0, 0, _RET_KILL),
        (_BPF_LD_W_ABS, 0, 0, 0),  # syscall number
    ]
    if arch == "x86_64":  # the x32 ABI: numbers with bit 30 set
        prog += [(_BPF_JGE, 0, 1, 0x40000000), (_BPF_RET, 0, 0, deny)]
    for name in _DENIED:
        if name in nr:
            prog += [(_BPF_JEQ, 0, 1, nr[name]), (_BPF_RET, 0, 0, deny)]
    for name in _ENOSYS:
        prog += [(_BPF_JEQ, 0, 1, nr[name]), (_BPF_RET, 0, 0, _errno(errno.ENOSYS))]
    # clone: threads only (CLONE_THREAD set), never a new process.
    prog += _arg_check(nr["clone"], 0, _CLONE_THREAD, allow_if_set=True)
    # open / openat: read-only opens only.
    flags = _WRITE_FLAGS[arch]
    if "open" in nr:
        prog += _arg_check(nr["open"], 1, flags, allow_if_set=False)
    prog += _arg_check(nr["openat"], 2, flags, allow_if_set=False)
    if mode == "program":  # no executable memory: no library can be loaded, no code injected
        prog += _arg_check(nr["mmap"], 2, _PROT_EXEC, allow_if_set=False)
        prog += _arg_check(nr["mprotect"], 2, _PROT_EXEC, allow_if_set=False)
        prog += _arg_check(nr["pkey_mprotect"], 2, _PROT_EXEC, allow_if_set=False)
    prog.append((_BPF_RET, 0, 0, _RET_ALLOW))
    return prog


def _arg_check(
    number: int, arg: int, bits: int, *, allow_if_set: bool
) -> list[tuple[int, int, int, int]]:
    """If the call is ``number``: allow or refuse by whether ``bits`` are set in ``arg``."""
    deny = _errno(errno.EPERM)
    set_ret, clear_ret = (_RET_ALLOW, deny) if allow_if_set else (deny, _RET_ALLOW)
    return [
        (_BPF_JEQ, 0, 4, number),  # not this call: on to the reload
        (_BPF_LD_W_ABS, 0, 0, _arg_low(arg)),
        (_BPF_JSET, 0, 1, bits),
        (_BPF_RET, 0, 0, set_ret),
        (_BPF_RET, 0, 0, clear_ret),
        (_BPF_LD_W_ABS, 0, 0, 0),  # the syscall number again, for the next check
    ]


def _install_seccomp(mode: Mode) -> None:
    prog = seccomp_filter(mode)
    raw = b"".join(struct.pack("<HBBI", code, jt, jf, k) for code, jt, jf, k in prog)
    buf = ctypes.create_string_buffer(raw)

    class _Fprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    fprog = _Fprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        code = ctypes.get_errno()
        raise SandboxError(code, f"seccomp refused the filter: {os.strerror(code)}")


# -- Landlock ---------------------------------------------------------------------------

_LL_CREATE, _LL_ADD, _LL_RESTRICT = 444, 445, 446
_LL_VERSION = 1
_LL_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ALL_V1 = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers (0: none)."""
    if _arch() not in _AUDIT_ARCH:
        return 0
    version = _libc.syscall(_LL_CREATE, None, 0, _LL_VERSION)
    return int(version) if version > 0 else 0


def read_roots() -> list[str]:
    """Folders a program's worker may read: where Python, torch and GradLab load from."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots.update(p for p in sys.path if p)
    roots.add(str(Path(__file__).resolve().parents[2]))  # GradLab itself (an editable install)
    return sorted(r for r in roots if os.path.isdir(r))


def _handled_fs(abi: int) -> int:
    rights = _FS_ALL_V1
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


_RULESETS: dict[Mode, int] = {}  # made once by a warm parent, inherited by its children


def ruleset(mode: Mode, abi: int) -> int:
    """The Landlock ruleset for ``mode`` (a file descriptor), made once per process.

    A warm parent calls it before forking, so that a child only has to
    enforce it (``landlock_restrict_self``), not build it.
    """
    if mode in _RULESETS:
        return _RULESETS[mode]
    handled = _handled_fs(abi)
    fields = [handled]
    if abi >= 4:
        fields.append(_NET_BIND_TCP | _NET_CONNECT_TCP)
    if abi >= 6:
        fields += [0] * (2 - len(fields)) + [_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL]
    attr = ctypes.create_string_buffer(struct.pack(f"<{len(fields)}Q", *fields))
    fd = _libc.syscall(_LL_CREATE, attr, len(attr.raw), 0)
    if fd < 0:
        code = ctypes.get_errno()
        raise SandboxError(code, f"Landlock refused the ruleset: {os.strerror(code)}")
    read = _FS_READ_FILE | _FS_READ_DIR
    for root in ["/"] if mode == "trusted" else read_roots():
        _allow(fd, root, read)
    os.set_inheritable(fd, True)
    _RULESETS[mode] = int(fd)
    return int(fd)


def ruleset_fds() -> list[int]:
    """The descriptors of the rulesets made so far: a child must keep them open."""
    return list(_RULESETS.values())


def _install_landlock(mode: Mode, abi: int) -> None:
    if _libc.syscall(_LL_RESTRICT, ruleset(mode, abi), 0) != 0:
        code = ctypes.get_errno()
        raise SandboxError(code, f"Landlock could not restrict: {os.strerror(code)}")


def _allow(ruleset: int, path: str, rights: int) -> None:
    try:
        parent = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # gone: nothing to allow
    try:
        rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, parent))
        if _libc.syscall(_LL_ADD, ruleset, _LL_RULE_PATH_BENEATH, rule, 0) != 0:
            code = ctypes.get_errno()
            raise SandboxError(code, f"Landlock refused a rule for {path}: {os.strerror(code)}")
    finally:
        os.close(parent)


# -- network namespace and process hygiene ----------------------------------------------


def isolate_network() -> bool:
    """Move this process into new user and network namespaces; whether it worked.

    It must be single-threaded, as a freshly forked child is. The same user
    and group ids are mapped inside, so files look as before; the only network
    device is a loopback that is down.
    """
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return False
    try:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    except OSError:
        pass  # ids show as "nobody" inside; access is still checked as the real user
    return True


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies."""
    _libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)


def network_isolated() -> bool:
    """Whether this process sees no network device but loopback."""
    try:
        devices = [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text()
                   .splitlines()[2:]]  # fmt: skip
    except OSError:
        return False
    return devices == ["lo"]


def set_limits(limits: Limits) -> None:
    """CPU, memory, file size, open files and core dumps for this process."""
    cpu = max(1, int(limits.cpu_seconds + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    size = _address_space()
    if size is not None:
        cap = size + limits.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))


def _address_space() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def confine(mode: Mode, limits: Limits) -> None:
    """Put every layer this machine offers in place, for good; :class:`SandboxError` if one fails.

    Call it in a freshly forked (single-threaded) child, after closing every
    file descriptor it must not keep, and before any untrusted code runs. A
    layer the machine lacks (:func:`status`) is skipped: ``gradlab app``
    refuses to serve other machines then, unless told to take the risk.
    """
    found = status()
    offered = (found.network_namespace, True, True, found.landlock >= 1, found.seccomp)
    for layer, available in zip(_layers(mode, limits), offered, strict=True):
        if available:
            layer()
    for fd in _RULESETS.values():  # the parent's rulesets: not for the program to change
        os.close(fd)
    _RULESETS.clear()


def _layers(mode: Mode, limits: Limits) -> list[Callable[[], None]]:
    def network() -> None:
        if not (isolate_network() and network_isolated()):
            raise SandboxError(errno.EPERM, "no network namespace could be made")

    def no_new_privs() -> None:
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise SandboxError(ctypes.get_errno(), "no_new_privs could not be set")

    def landlock() -> None:
        abi = landlock_abi()
        if abi < 1:
            raise SandboxError(errno.ENOSYS, "this kernel has no Landlock")
        _install_landlock(mode, abi)

    # The limits first: they read /proc/self/status, which Landlock then hides.
    return [network, no_new_privs, lambda: set_limits(limits), landlock,
            lambda: _install_seccomp(mode)]  # fmt: skip


_STATUS: Status | None = None


def status() -> Status:
    """Which layers this machine offers, probed once in a throw-away child."""
    global _STATUS
    if _STATUS is None:
        _STATUS = _probe()
    return _STATUS


def _probe() -> Status:
    if sys.platform != "linux":
        return Status(0, False, False, f"the sandbox needs Linux; this is {sys.platform}")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        passed = bytearray()
        for layer in _layers("program", Limits(cpu_seconds=5, memory_mb=256)):
            try:
                layer()
                passed.append(1)
            except BaseException:
                passed.append(0)
        os.write(write, bytes(passed))
        os._exit(0)
    os.close(write)
    data = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    ok = [len(data) == 5 and data[i] == 1 for i in range(5)]
    abi = landlock_abi() if ok[3] else 0
    seccomp, netns = ok[1] and ok[4], ok[0]
    missing = [name for name, good in (("Landlock", abi >= 1), ("seccomp", seccomp),
                                       ("network namespaces", netns)) if not good]  # fmt: skip
    reason = f"this kernel or container lacks {', '.join(missing)}" if missing else ""
    return Status(abi, seccomp, netns, reason)
