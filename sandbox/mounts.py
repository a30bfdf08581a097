"""Mount namespace: a minimal read-only root built from bind mounts, entered
with pivot_root. Runs inside the new mount and PID namespaces, as root."""

from __future__ import annotations

import os

from . import linux
from .spec import BindMount, FunctionSpec, SandboxSpec

DEVICES = ("null", "zero", "random", "urandom")
# Where the runtime template holds its binds of DEVICES (a name no bind's
# target starts with: those are absolute paths).
TEMPLATE_DEV = ".dev"
# A function may write files to /tmp, never run them: no program but the
# runtime's own interpreter runs inside.
TMP_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
# Where a function finds its secrets, one file each (OpenFaaS's place for them).
SECRETS_DIR = "/var/openfaas/secrets"
PAGE = 4096
# The mount namespace of the zygote (the host's), recorded before any fork.
HOST_MOUNT_NS = [0]
# Where a function's layer is mounted; its packages are /opt/python.
LAYER_TARGET = "/opt"
LAYER_PYTHON_PATH = f"{LAYER_TARGET}/python"
RO_BIND_FLAGS = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV


def _mountpoint(source: str, target: str) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    elif not os.path.lexists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # A new, empty file in the sandbox's own tmpfs: never a file reached
        # through a symlink, never one that exists already (the host's).
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))


def _bind(source: str, target: str, readonly: bool, extra_flags: int = 0) -> None:
    _mountpoint(source, target)
    linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
    flags = linux.MS_REMOUNT | linux.MS_BIND | linux.MS_NOSUID | extra_flags
    if readonly:
        flags |= linux.MS_RDONLY | linux.MS_NODEV
    linux.mount(None, target, None, flags)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def write_etc(root: str, spec: FunctionSpec) -> None:
    etc = os.path.join(root, "etc")
    _write(
        os.path.join(etc, "passwd"),
        f"root:x:0:0::/:/bin/false\nsandbox:x:{spec.uid}:{spec.gid}::/tmp:/bin/false\n",
    )
    _write(os.path.join(etc, "group"), f"root:x:0:\nsandbox:x:{spec.gid}:\n")
    _write(os.path.join(etc, "hostname"), spec.hostname + "\n")
    _write(os.path.join(etc, "hosts"), f"127.0.0.1 localhost {spec.hostname}\n::1 localhost\n")


def outermost(binds: tuple[BindMount, ...]) -> tuple[BindMount, ...]:
    """The binds whose target is not inside another's."""

    def inside(target: str, other: str) -> bool:
        return target != other and target.startswith(other.rstrip("/") + "/")

    return tuple(bind for bind in binds if not any(inside(bind.target, o.target) for o in binds))


def build_runtime_template(template_dir: str, binds: tuple[BindMount, ...]) -> None:
    """In the zygote, once, before any fork: a mount namespace of its own (a
    slave of the host's: the host's mounts still reach it, none of its own
    reach the host), and on `template_dir` a tmpfs with every runtime bind
    read-only where a sandbox has it. A sandbox's namespace is a copy of
    this one, and enter_root binds the outermost binds from here
    recursively: one mount call each instead of a bind and a remount for
    every one, the read-only, nosuid, nodev and noexec flags copied along;
    and each device node, one call instead of two."""
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    linux.mount("tmpfs", template_dir, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=64k,mode=0755")
    for bind in binds:
        noexec = linux.MS_NOEXEC if bind.noexec else 0
        _bind(bind.source, template_dir + bind.target, readonly=True, extra_flags=noexec)
    for name in DEVICES:
        _bind_device(f"/dev/{name}", os.path.join(template_dir, TEMPLATE_DEV, name))


def _bind_device(source: str, target: str) -> None:
    # Device nodes stay writable (writes to /dev/null must work) but no exec or suid.
    _bind(source, target, readonly=False, extra_flags=linux.MS_NOEXEC)


def _bind_runtime(spec: SandboxSpec, root: str) -> None:
    if not spec.runtime_template_dir:
        for bind in spec.runtime_binds:
            noexec = linux.MS_NOEXEC if bind.noexec else 0
            _bind(bind.source, root + bind.target, readonly=True, extra_flags=noexec)
        return
    for bind in outermost(spec.runtime_binds):
        source = spec.runtime_template_dir + bind.target
        _mountpoint(source, root + bind.target)
        linux.mount(source, root + bind.target, None, linux.MS_BIND | linux.MS_REC)


def enter_root(spec: SandboxSpec) -> None:
    """Build the sandbox's root on spec.new_root_dir and pivot into it.

    The root stays writable (to root only) and /var/task empty until
    `specialize` puts a function's code there and makes the root read-only.
    """
    if os.stat("/proc/self/ns/mnt").st_ino == HOST_MOUNT_NS[0]:
        # Every mount below would land on the host's own tree.
        raise RuntimeError("refusing to build a root outside a new mount namespace")
    # Nothing we mount may propagate back to the host's namespace.
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    root = spec.new_root_dir
    linux.mount("tmpfs", root, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")

    _bind_runtime(spec, root)
    dev = os.path.join(root, "dev")
    os.makedirs(dev)
    if spec.masked_files:
        empty = os.path.join(dev, ".empty")
        with open(empty, "w"):
            pass
        os.chmod(empty, 0o444)
        for path in spec.masked_files:
            if os.path.isfile(root + path):
                _bind(empty, root + path, readonly=True)
    for path, points_to in spec.symlinks:
        os.makedirs(os.path.dirname(root + path), exist_ok=True)
        os.symlink(points_to, root + path)
    os.makedirs(os.path.join(root, "var/task"))
    os.makedirs(root + SECRETS_DIR)
    os.makedirs(os.path.join(root, "etc"))
    if spec.nameservers:
        _write(
            os.path.join(root, "etc/resolv.conf"), "".join(f"nameserver {ns}\n" for ns in spec.nameservers)
        )

    for name in DEVICES:
        if spec.runtime_template_dir:
            # One call: the template's bind has the flags already.
            source = os.path.join(spec.runtime_template_dir, TEMPLATE_DEV, name)
            _mountpoint(source, os.path.join(dev, name))
            linux.mount(source, os.path.join(dev, name), None, linux.MS_BIND)
        else:
            _bind_device(f"/dev/{name}", os.path.join(dev, name))
    os.symlink("/proc/self/fd", os.path.join(dev, "fd"))
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", os.path.join(dev, name))

    tmp = os.path.join(root, "tmp")
    os.makedirs(tmp)
    linux.mount("tmpfs", tmp, "tmpfs", TMP_FLAGS, f"size={spec.tmp_size_mb}m,mode=1777")

    proc = os.path.join(root, "proc")
    os.makedirs(proc)
    linux.mount("proc", proc, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)

    # pivot_root(".", ".") stacks the old root on top of the new one; detaching
    # it leaves only the new root, with no put_old directory to clean up.
    os.chdir(root)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def attach_layer(layer_mount_fd: int) -> None:
    """The function's layer at /opt (its packages in /opt/python), and /lib
    (a directory the dynamic loader searches) pointing at its libraries.
    Into the root while it is still writable."""
    os.mkdir(LAYER_TARGET, 0o755)
    linux.move_mount(layer_mount_fd, LAYER_TARGET)
    os.symlink(f"{LAYER_TARGET}/lib", "/lib")


def specialize(function: FunctionSpec, code_mount_fd: int, layer_mount_fd: int | None = None) -> None:
    """Attach the function's code at /var/task (and its layer at /opt), size
    /tmp, write /etc, then make the root read-only. Runs after enter_root,
    still as root."""
    linux.move_mount(code_mount_fd, "/var/task")
    if layer_mount_fd is not None:
        attach_layer(layer_mount_fd)
    linux.mount(
        None,
        "/tmp",
        None,
        linux.MS_REMOUNT | TMP_FLAGS,
        f"size={function.tmp_size_mb}m,mode=1777",
    )
    write_etc("/", function)
    linux.mount(None, "/", None, linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)


# A layer zygote's sandbox: its own /etc over the zygote's read-only root.
ETC_OPTIONS = "size=64k,nr_inodes=64,mode=0755"
ETC_FLAGS = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC


def enter_layer_zygote_blank(tmp_size_mb: int) -> None:
    """What a sandbox a layer zygote forked has of its own besides the
    zygote's read-only root (which holds the layer already): /proc of its
    pid namespace, a new /tmp, and an /etc to write at specialize."""
    linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
    linux.mount("tmpfs", "/tmp", "tmpfs", TMP_FLAGS, f"size={tmp_size_mb}m,mode=1777")
    linux.mount("tmpfs", "/etc", "tmpfs", ETC_FLAGS, ETC_OPTIONS)


def specialize_in_layer_zygote(function: FunctionSpec, code_mount_fd: int) -> None:
    """specialize() for a sandbox a layer zygote forked: the code at
    /var/task, /tmp sized, its /etc written and made read-only."""
    linux.move_mount(code_mount_fd, "/var/task")
    linux.mount(None, "/tmp", None, linux.MS_REMOUNT | TMP_FLAGS, f"size={function.tmp_size_mb}m,mode=1777")
    write_etc("/", function)
    linux.mount(None, "/etc", None, linux.MS_REMOUNT | linux.MS_RDONLY | ETC_FLAGS, ETC_OPTIONS)


def install_secrets(
    secrets: tuple[tuple[str, bytes], ...], uid: int, gid: int, as_owner: bool = False
) -> None:
    """The function's secrets as files in SECRETS_DIR, on a tmpfs of their
    own in this sandbox's mount namespace (no other sandbox, and no file on
    the host, holds them): owned by the function's uid, mode 0400, then the
    whole mount read-only. Runs after `specialize`, still as root.

    as_owner: the files are made by the function's own uid (setfsuid), for a
    root that lacks CAP_CHOWN and CAP_DAC_OVERRIDE (a layer zygote's sandbox)."""
    if not secrets:
        return
    pages = 1 + sum(-(-len(value) // PAGE) for _, value in secrets)
    mode = "0700" if as_owner else "0500"
    options = f"size={pages * PAGE},nr_inodes={len(secrets) + 2},mode={mode},uid={uid},gid={gid}"
    linux.mount("tmpfs", SECRETS_DIR, "tmpfs", TMP_FLAGS, options)
    if as_owner:
        linux.set_filesystem_ids(uid, gid)
    try:
        _write_secrets(secrets, uid, gid)
        if as_owner:
            os.chmod(SECRETS_DIR, 0o500)
    finally:
        if as_owner:
            linux.set_filesystem_ids(0, 0)
    linux.mount(None, SECRETS_DIR, None, linux.MS_REMOUNT | linux.MS_RDONLY | TMP_FLAGS)


def _write_secrets(secrets: tuple[tuple[str, bytes], ...], uid: int, gid: int) -> None:
    for name, value in secrets:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError("a secret's name must be a plain file name")
        fd = os.open(
            os.path.join(SECRETS_DIR, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400
        )
        try:
            view = memoryview(value)
            while view:
                view = view[os.write(fd, view) :]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, 0o400)
        finally:
            os.close(fd)
