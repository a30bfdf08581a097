"""Tries every privileged operation an escape would start with. Each entry of
the answer is "ok" (the attempt worked: a hole) or the error it got."""

import ctypes
import os
import platform
import resource
import signal
import socket
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# Numbers of the system calls glibc has no wrapper for.
NR = {
    "x86_64": {"init_module": 175, "finit_module": 313, "delete_module": 176, "bpf": 321,
               "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425, "keyctl": 250,
               },
    "aarch64": {"init_module": 105, "finit_module": 273, "delete_module": 106, "bpf": 280,
                "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425, "keyctl": 219},
}.get(platform.machine(), {})  # fmt: skip

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096


def _rc(rc):
    return "ok" if rc >= 0 else os.strerror(ctypes.get_errno())


def _py(fn, *args):
    try:
        fn(*args)
        return "ok"
    except (OSError, ValueError) as exc:
        return os.strerror(exc.errno) if getattr(exc, "errno", None) else f"{type(exc).__name__}: {exc}"


def _syscall(name, *args):
    if name not in NR:
        return "skipped: unknown syscall number on " + platform.machine()
    return _rc(libc.syscall(NR[name], *[ctypes.c_long(a) for a in args]))


def _sleeping_child():
    pid = os.fork()
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    return pid


def handle(event, context):
    out = {}
    # Namespaces: a new user namespace needs no capability on many hosts.
    for name, flag in [("user", CLONE_NEWUSER), ("mount", CLONE_NEWNS), ("net", CLONE_NEWNET),
                       ("pid", CLONE_NEWPID), ("uts", CLONE_NEWUTS), ("ipc", CLONE_NEWIPC),
                       ("cgroup", CLONE_NEWCGROUP)]:  # fmt: skip
        out[f"unshare({name})"] = _rc(libc.unshare(flag))
    for ns in ("net", "mnt", "pid", "user", "uts", "ipc", "cgroup"):
        for owner in ("1", "self"):
            path = f"/proc/{owner}/ns/{ns}"
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                out[f"setns({path})"] = "open: " + os.strerror(exc.errno)
                continue
            out[f"setns({path})"] = _rc(libc.setns(fd, 0))
            os.close(fd)
    # Mounts and roots.
    out["mount tmpfs /tmp"] = _rc(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
    out["mount proc /tmp"] = _rc(libc.mount(b"proc", b"/tmp", b"proc", 0, None))
    out["mount cgroup /tmp"] = _rc(libc.mount(b"cgroup", b"/tmp", b"cgroup", 0, b"memory"))
    out["mount cgroup2 /tmp"] = _rc(libc.mount(b"cgroup2", b"/tmp", b"cgroup2", 0, None))
    out["remount / rw"] = _rc(libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND, None))
    out["bind /var/task rw"] = _rc(libc.mount(b"/tmp", b"/var/task", None, MS_BIND, None))
    out["umount /proc"] = _rc(libc.umount2(b"/proc", 2))
    out["chroot /tmp"] = _rc(libc.chroot(b"/tmp"))
    out["pivot_root"] = _rc(libc.syscall(155 if platform.machine() == "x86_64" else 41, b"/tmp", b"/tmp"))
    # Tracing: another process of the same uid, and itself.
    child = _sleeping_child()
    try:
        out["ptrace(ATTACH child)"] = _rc(libc.ptrace(16, child, None, None))
        out["ptrace(SEIZE child)"] = _rc(libc.ptrace(0x4206, child, None, None))
        buf = ctypes.create_string_buffer(8)
        iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 8)
        out["process_vm_readv(child)"] = _rc(
            libc.process_vm_readv(child, iov, 1, iov, 1, 0)  # reads its own address: enough to tell
        )
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    out["ptrace(TRACEME)"] = _rc(libc.ptrace(0, 0, None, None))
    # Kernel modules and other kernel-wide state.
    image = ctypes.create_string_buffer(b"\x7fELF" + b"\0" * 60)
    out["init_module"] = _syscall("init_module", ctypes.addressof(image), len(image.raw), 0)
    fd = os.open("/var/task", os.O_RDONLY)
    out["finit_module"] = _syscall("finit_module", fd, 0, 0)
    os.close(fd)
    out["delete_module"] = _syscall(
        "delete_module", ctypes.addressof(ctypes.create_string_buffer(b"ext4")), 0
    )
    out["bpf"] = _syscall("bpf", 0, 0, 0)
    out["perf_event_open"] = _syscall("perf_event_open", 0, 0, -1, -1, 0)
    out["userfaultfd"] = _syscall("userfaultfd", 0)
    out["io_uring_setup"] = _syscall("io_uring_setup", 1, 0)
    out["keyctl"] = _syscall("keyctl", 0, -3, 0)  # KEYCTL_GET_KEYRING_ID of the session keyring
    # The clock, set to what it already is (harmless if it ever worked).
    ts = (ctypes.c_long * 2)(int(time.time()), 0)
    out["clock_settime"] = _rc(libc.clock_settime(0, ts))
    # Identity.
    before = socket.gethostname()
    out["sethostname"] = _rc(libc.sethostname(b"pwned", 5))
    out["setdomainname"] = _rc(libc.setdomainname(b"pwned", 5))
    out["hostname after"] = socket.gethostname()
    out["hostname before"] = before
    out["setuid(0)"] = _py(os.setuid, 0)
    out["seteuid(0)"] = _py(os.seteuid, 0)
    out["setresuid(0,0,0)"] = _py(os.setresuid, 0, 0, 0)
    out["setgid(0)"] = _py(os.setgid, 0)
    out["setgroups([0])"] = _py(os.setgroups, [0])
    out["capset(all)"] = _rc(  # _LINUX_CAPABILITY_VERSION_3, this process, every capability
        libc.capset((ctypes.c_uint32 * 2)(0x20080522, 0), (ctypes.c_uint32 * 6)(*[0xFFFFFFFF] * 6))
    )
    out["clear no_new_privs"] = _rc(libc.prctl(38, 0, 0, 0, 0))
    out["ambient raise CAP_SYS_ADMIN"] = _rc(libc.prctl(47, 2, 21, 0, 0))
    # Limits: raising a hard limit needs CAP_SYS_RESOURCE.
    for name in ("RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CORE", "RLIMIT_NPROC"):
        which = getattr(resource, name)
        soft, hard = resource.getrlimit(which)
        if hard == resource.RLIM_INFINITY:
            out[f"raise {name}"] = f"skipped: hard limit is unlimited ({soft})"
            continue
        out[f"raise {name}"] = _py(resource.setrlimit, which, (hard + 1, hard + 1))
    out["nofile after"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    # cgroups: nothing of /sys is there to write to.
    out["/sys exists"] = os.path.exists("/sys")
    out["/sys/fs/cgroup exists"] = os.path.exists("/sys/fs/cgroup")
    own = open("/proc/self/cgroup").read().split()
    out["write cgroup files"] = []
    for line in own:
        _, controllers, path = line.split(":", 2)
        for ctl in (controllers.split(",")[0] or "unified",):
            for file in ("memory.limit_in_bytes", "pids.max", "cgroup.procs", "memory.max"):
                target = f"/sys/fs/cgroup/{ctl}{path}/{file}"
                try:
                    with open(target, "w") as f:
                        f.write("max")
                    out["write cgroup files"].append(target)
                except OSError:
                    pass
    out["uid"] = [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]
    return out
