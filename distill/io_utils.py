"""Atomic file writes: a kill mid-write leaves the previous file intact, never a half-written one."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path beside `path`; whatever the block writes there replaces `path` only if
    the block finishes, so a crash leaves the old file (or none), never a half-written one."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
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
