"""Files written so that a failure never destroys the previous one, and paths checked early.

:func:`atomic_write` is how every nnref file writer (model archives, IDX files) puts
bytes on disk: into a new temporary file in the target's folder, flushed and synced, then
renamed over the target with ``os.replace``. A rename within one file system is atomic
(POSIX ``rename``, Windows ``MoveFileEx``), so at every moment the target is either the
complete old file or the complete new one; a write that fails (disk full, file-size
limit, interrupted) removes the temporary file and leaves the old one as it was.

:func:`check_writable_file` and :func:`check_writable_dir` let a caller (the command line)
find out before hours of work that the result could not be saved.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ._checks import describe

__all__ = ["as_path", "atomic_write", "check_writable_dir", "check_writable_file", "read_file_bytes"]


def as_path(value, name: str) -> Path:
    """Return ``value`` as a Path after checking it is a ``str`` or ``os.PathLike``.

    Parameters
    ----------
    value : str or os.PathLike
        A file or folder name.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TypeError
        For anything else (an int would otherwise be taken as a file descriptor).
    """
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike path, got {describe(value)}")
    return Path(value)


def read_file_bytes(path, name: str = "path") -> tuple[str, bytes]:
    """The name and the whole content of the file at ``path``, after checking it is a file.

    For formats whose parser needs the bytes in memory (FlatBuffers): reading a file
    allocates exactly its size, never more than it holds.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    (str, bytes)
        ``os.fspath(path)`` and the content.

    Raises
    ------
    TypeError
        ``path`` is not a path.
    FileNotFoundError
        No such file.
    ValueError
        ``path`` is a folder.
    """
    path = os.fspath(as_path(path, name))
    if os.path.isdir(path):
        raise ValueError(f"{name}: expected a file, got {path!r}, which is a folder")
    with open(path, "rb") as f:
        return path, f.read()


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, exclusively created file next to ``path``: its descriptor and name.

    Created with mode 0o666 so the umask applies, as it would to ``open(path, "wb")``.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def atomic_write(path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file through ``write(f)`` so that a failure leaves the old file intact.

    Steps: create a temporary file in ``path``'s folder; ``write(f)``; flush and
    ``os.fsync``; give it the old file's permission bits (if there was one); rename it to
    ``path`` with ``os.replace``; on POSIX, sync the folder so the rename itself is on
    disk. On any failure (including ``KeyboardInterrupt``) the temporary file is removed
    and the exception propagates.

    Parameters
    ----------
    path : str or os.PathLike
        The file to (re)place. A symbolic link there is replaced by the new file.
    write : callable
        ``write(f)`` writes the content to the binary file object ``f``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OSError
        Naming ``path``: a folder there, a missing or read-only folder; or the write
        fails (disk full, ``RLIMIT_FSIZE``); the previous file is then unchanged.
    """
    path = Path(path)
    if path.is_dir():  # else os.replace's error would name the temporary file
        raise IsADirectoryError(errno.EISDIR, "is a folder, expected a file name", str(path))
    try:
        fd, tmp = _create_temporary(path)
    except OSError as exc:  # name the target, not the temporary file
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass  # a new file keeps the umask's mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if os.name == "posix":
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder``: the one sure test that it is writable.

    (``os.access`` says yes to root on a read-only file system, and no to nobody about
    a full disk.)
    """
    fd, tmp = _create_temporary(folder / "nnref-probe")
    os.close(fd)
    tmp.unlink()


def check_writable_file(path, name: str) -> Path:
    """Check that a file can be written at ``path`` (atomically) without writing it.

    Parameters
    ----------
    path : str or os.PathLike
        Where a result is going to be saved.
    name : str
        The argument's (or option's) name, for the error message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TypeError
        For a ``path`` that is not a path.
    ValueError
        When ``path`` is a folder, its folder does not exist or cannot be written in.
    """
    path = as_path(path, name)
    if path.is_dir():
        raise ValueError(f"{name}: expected a file name, got {str(path)!r}, which is a folder")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"{name}: expected a file in an existing folder, got {str(path)!r} "
                         f"(no folder {str(folder)!r})")
    try:
        _probe(folder)
    except OSError as exc:
        raise ValueError(f"{name}: cannot write {str(path)!r}: creating a file in "
                         f"{str(folder)!r} failed ({exc.strerror or exc})") from None
    return path


def check_writable_dir(path, name: str) -> Path:
    """Check that files can be written in folder ``path``, once it is created if missing.

    Nothing is created: a missing folder is checked through its nearest existing
    ancestor, which must be a writable folder.

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    name : str
        The argument's (or option's) name, for the error message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TypeError
        For a ``path`` that is not a path.
    ValueError
        When ``path`` or an ancestor is a file, or the folder cannot be written in.
    """
    path = as_path(path, name)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{name}: expected a folder, got {str(path)!r}, but {str(existing)!r} is a file")
    try:
        _probe(existing)
    except OSError as exc:
        raise ValueError(f"{name}: cannot write in {str(path)!r}: creating a file in "
                         f"{str(existing)!r} failed ({exc.strerror or exc})") from None
    return path
