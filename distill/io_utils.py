"""Atomic file and dir writes: a kill mid-write leaves the previous file intact, never a half-written one;
a write that fails (disk full, quota, permissions) becomes one line that says so. Every write of a result,
a checkpoint, a model or a cache entry goes through `atomic_path` or `atomic_dir`. Also the cache root."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid

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


@contextlib.contextmanager
def atomic_dir(final_dir: str, what: str | None = None, tmp_dir: str | None = None):
    """Yield an empty temporary dir (`tmp_dir`, default `<final_dir>.tmp`); what the block writes there
    replaces `final_dir` as a whole only if the block finishes. A storage failure becomes one line naming
    `what` (default: the dir); a kill leaves the old dir (or its `.old` copy mid-swap) and a `.tmp` dir that
    the next run removes. File modes follow the umask (some writers make 0600 files)."""
    tmp = tmp_dir or final_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with writing(what or final_dir, cleanup=tmp):
        os.makedirs(tmp)
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        set_file_modes(tmp)
        replace_dir(tmp, final_dir)


def partial_dir_name(final_dir: str) -> str:
    """A fresh name beside `final_dir` (`<final_dir>.partial-<random>`) for a dir that is filled and then
    moved into place with `publish_dir`: several runs may build the same `final_dir` at once, each in its
    own partial dir. A kill leaves the partial dir behind, never a half-filled `final_dir`."""
    return f"{final_dir}.partial-{uuid.uuid4().hex[:12]}"


def publish_dir(partial: str, final_dir: str, what: str | None = None) -> bool:
    """Move the complete dir `partial` into place as `final_dir`, unless a complete `final_dir` is there
    already (another run published the same content first): then `partial` is removed. The first copy wins
    and is never replaced, so a run reading `final_dir` meanwhile is not disturbed. True if this one was
    published. A storage failure becomes one line naming `what` (default: the dir)."""
    with writing(what or final_dir, cleanup=partial):
        set_file_modes(partial)
        if os.path.isdir(final_dir):
            shutil.rmtree(partial, ignore_errors=True)
            return False
        try:
            os.replace(partial, final_dir)
        except OSError as e:  # published by another run between the check and the rename
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not os.path.isdir(final_dir):
                raise
            shutil.rmtree(partial, ignore_errors=True)
            return False
        return True


def cache_root(*parts: str) -> str:
    """`$XDG_CACHE_HOME/distill/<parts>` (default `~/.cache/distill/<parts>`), resolved when called, so a
    run (or a test) that sets XDG_CACHE_HOME gets its own cache. The one root of every cache we keep."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "distill", *parts)


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
