"""Writing that never leaves half a result: atomic files, atomically published folders, and an
output lock.

* :func:`atomic_write_bytes` writes a temporary file beside the target, ``fsync``s it and
  renames it over the target.
* :func:`publish_directory` makes a fully written staging folder appear at its final path in
  one step. On Linux it swaps the two folders with ``renameat2(RENAME_EXCHANGE)``, so a kill
  at any instant leaves either the previous complete folder or the new complete one at the
  path, never a mix and never nothing. Where the exchange is unavailable it falls back to two
  renames and leaves the previous folder as ``<name>.previous`` until the new one is in place
  (:func:`recover_directory` puts it back after a crash between them).
* :class:`OutputLock` stops two runs from writing the same output folder: the second waits
  or refuses with a message naming the first (pid, command, start time); the lock file is
  removed when the lock is released.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class OutputLockedError(RuntimeError):
    """Another process is writing the same output folder."""


class OutputFolderError(FileExistsError):
    """The output folder holds something sigformer did not write: replacing it would delete
    the user's files."""


# what the folders sigformer publishes hold (each group: all of): a pipeline run's outputs, a
# checkpoint / bundle, an export
KNOWN_OUTPUTS = (("pipeline.json", "metrics.json"), ("config.json", "model.safetensors"),
                 ("model.onnx", "preprocess.json"), ("model.pt", "preprocess.json"),
                 ("model.pt2", "preprocess.json"))


# files that do not make a folder the user's (an otherwise empty folder is replaceable)
PLACEHOLDERS = frozenset({".gitkeep", ".keep", ".DS_Store", "Thumbs.db"})


def _written_by_sigformer(folder: Path, names: set[str]) -> bool:
    """A folder with ``config.json`` is sigformer's only when that config says so (a Hugging
    Face model folder or repository clone has a config.json and model.safetensors too, and
    its ``.git`` would be deleted with the rest)."""
    return "config.json" not in names or is_sigformer_config(folder / "config.json")


def is_sigformer_config(path: Path) -> bool:
    """Whether the ``config.json`` at ``path`` is sigformer's (a Hugging Face folder has
    one of its own)."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and (config.get("format") == "sigformer-bundle"
                                         or "sigformer_version" in config)


# what sigformer's training scripts and recipes write beside a checkpoint's own files
TRAINING_SIDE_FILES = frozenset({
    "train_report.json", "trainer_state.json", "optimizer.safetensors", "trainer.json",
    "trainer.safetensors", "history.json", "train_state.pt", "latest.json"})


def _files_not_in_the_checkpoint(folder: Path, names: set[str]) -> set[str]:
    """For a checkpoint / bundle folder (``config.json`` listing its ``files``): the names in
    it that sigformer did not write there (the user's notes or results); empty otherwise."""
    if "config.json" not in names:
        return set()
    try:
        files = json.loads((folder / "config.json").read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return set()
    if not isinstance(files, dict):
        return set()
    ours = {"config.json", "MODEL_CARD.md"} | {Path(f).parts[0] for f in files if Path(f).parts}
    return names - ours - TRAINING_SIDE_FILES


def check_replaceable(final: str | os.PathLike) -> None:
    """Refuse an output folder that exists, is not empty and was not written by sigformer
    (none of the :data:`KNOWN_OUTPUTS` groups): publishing replaces the folder as a whole, so
    ``--out .`` or a project folder would lose everything in it."""
    final = _absolute(final)
    if not final.is_dir():
        return
    names = {entry.name for entry in final.iterdir()} - PLACEHOLDERS
    foreign = _files_not_in_the_checkpoint(final, names)
    if not names or any(all(n in names for n in group) for group in KNOWN_OUTPUTS) \
            and _written_by_sigformer(final, names) and not foreign:
        return
    if foreign:  # a checkpoint folder the user added notes or results to
        names = foreign
    shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
    raise OutputFolderError(
        f"{final} already holds files sigformer did not write ({shown}); an output folder is "
        f"replaced as a whole when the run ends, so they would be deleted. Give a new or "
        f"empty folder (or one an earlier sigformer run wrote)")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` so readers see the old content or the new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600; outputs get normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def json_default(obj):
    """JSON for the numpy values and paths that reports hold."""
    import numpy as np

    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def atomic_write_json(path: str | os.PathLike, obj, **dump_kwargs) -> Path:
    dump_kwargs.setdefault("default", json_default)
    return atomic_write_text(path, json.dumps(obj, indent=2, **dump_kwargs))


def _absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and normalised: ``"."``, ``"./"`` or ``"x/.."`` have no name of
    their own, and the sibling paths below (``<name>.previous``, staging folders, locks) need
    one."""
    return Path(os.path.abspath(os.fspath(path)))


def staging_directory(final: str | os.PathLike) -> Path:
    """A fresh empty folder beside ``final`` (same file system, so publishing is a rename)."""
    final = _absolute(final)
    if final.exists() and not final.is_dir():  # never swap a user's file for a folder
        raise NotADirectoryError(f"{final} exists and is not a folder; refusing to replace it "
                                 f"with an output folder (expected a folder path (or a new "
                                 f"name))")
    final.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.staging-"))
    os.chmod(path, 0o755)
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def publish_directory(staging: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Move the complete folder ``staging`` to ``final``, replacing what was there in one
    step; the previous content is deleted afterwards."""
    given = Path(final)  # returned as the caller wrote it
    staging, final = _absolute(staging), _absolute(final)
    check_replaceable(final)  # checked again at the last moment: never delete user files
    _fsync_tree(staging)
    if not final.exists():
        os.rename(staging, final)
    elif _exchange(staging, final):
        shutil.rmtree(staging)  # now holds the previous content
    else:  # pragma: no cover - non-Linux fallback
        previous = final.with_name(final.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        os.rename(final, previous)
        os.rename(staging, final)
        shutil.rmtree(previous)
    _fsync_directory(final.parent)
    return given


def recover_directory(final: str | os.PathLike) -> bool:
    """After a crash during the non-atomic fallback, put ``<final>.previous`` back."""
    final = _absolute(final)
    previous = final.with_name(final.name + ".previous")
    if not final.exists() and previous.is_dir():
        os.rename(previous, final)
        return True
    return False


def discard_stale_staging(final: str | os.PathLike, older_than_s: float = 3600.0) -> int:
    """Remove staging folders that a killed run left beside ``final``; returns how many."""
    final = _absolute(final)
    removed = 0
    if not final.parent.is_dir():
        return 0
    for path in final.parent.glob(f".{final.name}.staging-*"):
        try:
            if time.time() - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


@contextmanager
def published(final: str | os.PathLike):
    """``with published(out) as tmp:`` write everything into ``tmp``; on success it replaces
    ``out`` in one step, on error ``out`` is untouched and ``tmp`` removed."""
    staging = staging_directory(final)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish_directory(staging, final)


class OutputLock:
    """An exclusive lock on an output folder, held by one process at a time (``flock`` on
    ``<folder>.lock``). ``wait=False`` (default) refuses at once when another run holds it.

    Releasing removes ``<folder>.lock``, so a finished run leaves nothing behind. A run that
    crashed leaves the file, but not the lock (the kernel drops a dead process's ``flock``):
    the next run takes it over. A waiter whose file was removed by the holder before it got
    the lock opens the path again (a lock on a removed file would guard nothing)."""

    def __init__(self, target: str | os.PathLike, *, wait: bool = False,
                 timeout: float | None = None):
        self.target = Path(target)
        self.path = _absolute(target).with_name(_absolute(target).name + ".lock")
        self.wait, self.timeout = wait, timeout
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            fd = self._try_lock()
            if fd is not None:
                break
            if not self.wait or (deadline is not None and time.monotonic() > deadline):
                raise OutputLockedError(
                    f"{self.target} is being written by another run "
                    f"({_read_holder(self.path)}); wait for it to finish or choose another "
                    f"output folder (--out)") from None
            time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def _try_lock(self) -> int | None:
        """The locked descriptor of the file now at ``self.path``, or None when another run
        holds it."""
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            if _is_at_path(fd, self.path):
                return fd
            os.close(fd)  # the holder removed it between our open and our lock: open again

    def release(self) -> None:
        import fcntl

        if self._fd is not None:
            # removed while still locked: a waiter that opened it sees it gone and re-opens
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _is_at_path(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path`` (not removed or replaced)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (at_path.st_dev, at_path.st_ino)


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return "unknown process"
    return (f"pid {info.get('pid', '?')}, started {info.get('started', '?')}: "
            f"{info.get('command', '?')}")


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_directory(root)
