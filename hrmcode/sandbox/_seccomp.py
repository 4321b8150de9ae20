"""A small seccomp filter for the bubblewrap profile (x86_64 only), as raw BPF for ``bwrap --seccomp``.

It refuses what untrusted test code never needs and what widens the kernel's attack surface:
creating namespaces (``unshare``, ``setns``, namespace flags on ``clone``; ``clone3`` answers ENOSYS
so libc falls back to ``clone``, whose flags a filter can see), mounting, keyrings, ``bpf``,
``perf_event_open``, ``userfaultfd``, ``io_uring``, module loading and reboot-class calls; and the
i386 and x32 syscall ABIs altogether (otherwise a filter on x86_64 numbers is bypassed through
them). Everything else is allowed: this is hardening on top of the namespaces/uid/rlimits, not a
whitelist. On other architectures no filter is installed (``filter_bytes`` returns None).
"""

from __future__ import annotations

import errno
import platform
import struct

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
_CLONE, _CLONE3 = 56, 435
# x86_64 numbers: unshare, setns, mount, umount2, pivot_root, swapon, swapoff, reboot, init_module,
# delete_module, finit_module, kexec_load, kexec_file_load, add_key, request_key, keyctl, bpf,
# perf_event_open, userfaultfd, open_by_handle_at, name_to_handle_at, io_uring_setup/enter/register,
# fsopen, fsconfig, fsmount, fspick, move_mount, open_tree, mount_setattr
_DENIED = (272, 308, 165, 166, 155, 167, 168, 169, 175, 176, 313, 246, 320, 248, 249, 250, 321, 298, 323, 304,
           303, 425, 426, 427, 430, 431, 432, 433, 429, 428, 442)

_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06


def _assemble(program: list[tuple]) -> bytes:
    """``program``: (op, k, jt_label, jf_label) or ('label', name); jumps are resolved forward."""
    labels: dict[str, int] = {}
    index = 0
    for item in program:
        if item[0] == "label":
            labels[item[1]] = index
        else:
            index += 1
    out = []
    index = 0
    for item in program:
        if item[0] == "label":
            continue
        op, k, jt, jf = item
        jt_off = labels[jt] - index - 1 if isinstance(jt, str) else jt
        jf_off = labels[jf] - index - 1 if isinstance(jf, str) else jf
        out.append(struct.pack("<HBBI", op, jt_off, jf_off, k))
        index += 1
    return b"".join(out)


def filter_bytes() -> bytes | None:
    if platform.machine() != "x86_64":
        return None
    program: list[tuple] = [
        (_LD_ABS_W, 4, 0, 0),  # seccomp_data.arch
        (_JEQ, _AUDIT_ARCH_X86_64, 0, "enosys"),
        (_LD_ABS_W, 0, 0, 0),  # seccomp_data.nr
        (_JGE, _X32_BIT, "enosys", 0),
        (_JEQ, _CLONE, "clone", 0),
        (_JEQ, _CLONE3, "enosys", 0),
    ]
    program += [(_JEQ, nr, "eperm", 0) for nr in _DENIED]
    program += [
        (_RET, _RET_ALLOW, 0, 0),
        ("label", "clone"),
        (_LD_ABS_W, 16, 0, 0),  # low 32 bits of args[0]: the clone flags
        (_JSET, _NAMESPACE_FLAGS, "eperm", 0),
        (_RET, _RET_ALLOW, 0, 0),
        ("label", "eperm"),
        (_RET, _RET_ERRNO | errno.EPERM, 0, 0),
        ("label", "enosys"),
        (_RET, _RET_ERRNO | errno.ENOSYS, 0, 0),
    ]
    return _assemble(program)
