"""Atomic file writes: a kill mid-write leaves the previous file intact, never a half-written one;
a write that fails (disk full, quota, permissions) becomes one line that says so."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile

from distill.errors import UsageError

# How libraries word a failed write when they do not raise OSError (torch.save, safetensors).
_WRITE_FAILURE = re.compile(r"No space left|StorageFull|Disk quota|QuotaExceeded|Permission denied|PermissionDenied|"
                            r"Read-only file system|File too large|file write failed|failed writing file", re.I)


def write_failure(error: BaseException) -> str | None:
    """Why a write failed, in a few words, when `error` is a storage failure; None for anything else."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.strerror or str(error)
    message = str(error)
    match = _WRITE_FAILURE.search(message)
    if match is None:
        return None
    return match.group(0) if isinstance(error, OSError) or len(message) > 120 else message


@contextlib.contextmanager
def writing(what: str, cleanup: str | None = None):
    """Run a block that writes `what`; a storage failure in it becomes one UsageError line (after removing
    `cleanup`, the block's temporary file or dir, to give the space back). Everything complete before
    (the previous checkpoint, earlier results) is untouched: writes go to temporary paths first."""
    try:
        yield
    except Exception as e:
        reason = write_failure(e)
        if reason is None:
            raise
        if cleanup is not None:
            if os.path.isdir(cleanup):
                shutil.rmtree(cleanup, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(cleanup)
        raise UsageError(f"could not write {what} ({reason}); free disk space or fix the permissions, then rerun the "
                         "same command: it resumes from the last complete checkpoint") from None


def set_file_modes(directory: str) -> None:
    """Give every file in `directory` the mode of `file_mode()`."""
    mode = file_mode()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not os.path.islink(path):
            os.chmod(path, mode)


def file_mode() -> int:
    """The mode `open()` gives a new file under the current umask (mkstemp's files are 0600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path beside `path`; whatever the block writes there replaces `path` only if
    the block finishes, so a crash leaves the old file (or none), never a half-written one."""
    directory = os.path.dirname(os.path.abspath(path))
    with writing(path):
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
        os.close(fd)
        os.chmod(tmp, file_mode())  # readable as the user's other files are, not 0600
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def atomic_write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def replace_dir(tmp_dir: str, final_dir: str) -> None:
    """Swap a fully written `tmp_dir` into `final_dir`; the old copy is removed only afterwards."""
    old = None
    if os.path.exists(final_dir):
        old = final_dir + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def weights_fingerprint(model_path: str) -> str:
    """Identifies a model's weights: the sha256 of a local dir's weight files, else of the Hub id."""
    h = hashlib.sha256(model_path.encode() if not os.path.isdir(model_path) else b"")
    if os.path.isdir(model_path):
        for name in sorted(os.listdir(model_path)):
            if name.endswith((".safetensors", ".bin")):
                with open(os.path.join(model_path, name), "rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        h.update(block)
    return h.hexdigest()
