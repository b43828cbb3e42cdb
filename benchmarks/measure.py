"""What the memory benchmarks share: the peak one step adds, measured in a fresh process, and wall time.

On the CPU the peak is the process's peak RSS minus its RSS before the step. glibc keeps freed blocks below its
(self-raising) mmap threshold in the heap, so RSS would count memory already released; children run with every
block over 64 KiB mmapped, so that RSS follows live memory. Linux carries a process's peak RSS over fork + exec,
so a parent must start its children before it grows itself. On a GPU: torch.cuda.max_memory_allocated.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch

CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "HF_HUB_OFFLINE": "1"}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes_of(step: Callable[[], object], device: str = "cpu") -> int:
    """Bytes `step()` adds at its peak on top of what exists before it (in a fresh process: see above)."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    base = rss_bytes()
    step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base


def run_child(script: str, argv: list[str]) -> dict:
    """`python script argv...` in a fresh process with CHILD_ENV; its last printed line, as JSON."""
    out = subprocess.run([sys.executable, script, *argv], check=True, capture_output=True, text=True,
                         env={**os.environ, **CHILD_ENV}).stdout
    return json.loads(out.strip().splitlines()[-1])


def timed(step: Callable[[], object], device: str = "cpu") -> float:
    """Wall seconds of `step()` (synchronised on a GPU)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
