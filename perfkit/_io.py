"""Writing files so that a reader never sees half of one, and a bad path gives one line.

Every file perfkit writes (documents, reports, traces, budgets) goes through
:func:`atomic_open` or its two shorthands: the bytes go to a temporary file in
the same folder, are flushed and fsynced, and the temporary file is renamed over
the target. A full disk, a crash or Ctrl-C mid-write leaves the previous file (or
none) and never a truncated one; the error names the file.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import IO, Any, Callable, Iterator, Union

from .errors import PerfkitError

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Mode of a new file, as ``open()`` would create it (``mkstemp`` alone would give 0600).
_FILE_MODE = 0o666 & ~_umask()


class OutputError(PerfkitError):
    """An output file cannot be written (missing folder, a folder in its place, no space, no permission)."""


def check_output_path(path: PathLike) -> str:
    """Raise :class:`OutputError` (one line, naming the file) unless ``path`` can be written as a file.

    Checked before any work is done, so a wrong ``--json`` path fails in a
    second rather than after the analysis.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        raise OutputError(f"{p}: is a directory, expected a file name to write")
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist"
        raise OutputError(f"{p}: cannot write, the folder {parent} {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{p}: cannot write, no permission to create files in {parent}")
    return p


def regular_file(path: PathLike, what: str, error: Callable[[str], Exception]) -> os.stat_result:
    """``os.stat`` of ``path`` when it is a regular file; else raise ``error(one line naming it)``.

    Checked before any ``open()``: a FIFO would block there and a device never end. The
    trace reader and the document reader both read their input through this check.
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{p}: no such file") from None
    except OSError as exc:
        raise error(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
                "a character device (a terminal or stdin?)" if stat.S_ISCHR(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise error(f"{p}: is {kind}, expected a {what} (save it to a file first)")
    return st


def _temporary_sibling(folder: str, prefix: str) -> tuple[int, str]:
    """A new file ``folder/<prefix><random>.tmp``, created exclusively, mode 0600: what
    ``tempfile.mkstemp`` does, without importing tempfile (~5 ms: shutil, bz2, lzma, random)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}.tmp")
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free temporary name")


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success fsync and rename it over ``path``.

    ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``.
    On any exception the temporary file is removed, ``path`` is left as it
    was, and an ``OSError`` is re-raised as :class:`OutputError` naming ``path``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    p = check_output_path(path)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    folder = os.path.dirname(os.path.abspath(p))
    try:
        fd, tmp = _temporary_sibling(folder, f".{os.path.basename(p)}.")
    except OSError as e:
        raise OutputError(f"{p}: cannot write ({e.strerror or e})") from None
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise OutputError(f"{p}: cannot write ({e.strerror or e}); the file was not changed") from None
        raise


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
