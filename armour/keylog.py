"""keylog.py: TLS secrets for Wireshark, written only to a file nobody else can read.

Prevents: a key log (--keylog) that lets someone else decrypt the traffic:
a file others can read, one that belongs to someone else, or a symbolic
link planted to lead our secrets into another file (issue 8). Used by
server.py and client.py alike (client.py turns KeylogError into its own Failure).
"""

import errno
import os
import shlex
import stat

from armour import ConfigError

WARNING = "warning: writing TLS session secrets to {path}; use only for debugging"


class KeylogError(ConfigError):
    """A key log we refuse: what is wrong, and the fix."""

    def __init__(self, what, fix):
        super().__init__("bad key log", what, fix)


def open_keylog(context, path):
    """Have `context` write TLS secrets to `path`, after checking it is a
    regular file of ours that no one else can read; return the warning to
    print. Raises KeylogError.

    The file is created (or opened) with O_NOFOLLOW and mode 0600, and
    checked. Then Python opens the path again itself (keylog_filename takes
    a name, not a descriptor), so we look at the path once more and refuse
    if it is no longer the file we checked. The race that remains: someone
    who can write to the folder could swap the file and swap it back
    between those two looks. Keep key logs in a folder only you can write to."""
    # O_NONBLOCK: a FIFO with no reader fails at once instead of blocking us.
    flags = (os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_NONBLOCK", 0))
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ENXIO:                 # that FIFO
            check_private_file(path, os.lstat(path))
        if exc.errno == errno.ELOOP:
            raise KeylogError(f"key log {path!r} is a symbolic link, which could lead our "
                              f"secrets into another file",
                              "pass --keylog a file of your own, not a link") from None
        raise KeylogError(f"cannot write the key log {path!r} ({exc.strerror})",
                          "pass --keylog a file in a folder you can write") from None
    try:
        opened = os.fstat(fd)
    finally:
        os.close(fd)
    check_private_file(path, opened)
    context.keylog_filename = path
    now = os.lstat(path)
    if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino) or not stat.S_ISREG(now.st_mode):
        raise KeylogError(f"key log {path!r} was replaced while we opened it",
                          "pass --keylog a file in a folder only you can write")
    return WARNING.format(path=path)


def check_private_file(path, st):
    """Refuse unless `st` is a regular file owned by us, unreadable by others."""
    if not stat.S_ISREG(st.st_mode):
        raise KeylogError(f"key log {path!r} is not a regular file",
                          "pass --keylog a plain file, e.g. --keylog keys.txt")
    if st.st_uid != os.geteuid():
        raise KeylogError(f"key log {path!r} belongs to another user (uid {st.st_uid})",
                          "pass --keylog a file of your own")
    if st.st_mode & 0o077:
        raise KeylogError(f"key log {path!r} has mode {stat.S_IMODE(st.st_mode):04o}: other "
                          f"users could read our session secrets",
                          f"chmod 600 {shlex.quote(path)}, or pass --keylog a new file")
