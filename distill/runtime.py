"""The process a run trains in: devices and the process group (accelerate), seeds, and logging."""
from __future__ import annotations

import logging
import os

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState
from accelerate.utils import set_seed

from distill.args import TrainingArguments
from distill.errors import UsageError


def multi_cpu_run() -> bool:
    """Several processes and no CUDA. accelerate only sets up multi-process CPU training (gloo) when told
    the run is on the CPU; otherwise `torchrun --nproc_per_node 2` on a CPU machine gives two unrelated
    runs, each believing it is alone."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_state(use_cpu: bool = False) -> PartialState:
    """The process group, made as `make_accelerator` makes it. Code that synchronises processes before
    an accelerator exists (TA chains) must start it here: the first PartialState fixes the group for
    the whole process."""
    return PartialState(cpu=use_cpu or multi_cpu_run())


def make_accelerator(args: TrainingArguments) -> Accelerator:
    """Devices, DDP and mixed precision for one run (`--fp16`, `--bf16`, `--use_cpu`; `--fsdp`: distill/sharding.py)."""
    if args.fp16 and not torch.cuda.is_available():
        raise UsageError("--fp16 needs a CUDA GPU; on the CPU use --bf16 or full precision")
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "no"
    # accelerate keeps its settings in a process-wide singleton; runs made one after another in one
    # process (the demo, TAKD stages, tests) may differ in precision, so start each from a clean slate.
    # The process group (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    accelerator = Accelerator(mixed_precision=precision, cpu=args.use_cpu or multi_cpu_run())
    if getattr(args, "fsdp", None):  # (a 1-process run has no process group, and FSDP needs one)
        from distill.sharding import ensure_process_group
        ensure_process_group()
    if not accelerator.is_main_process:  # one copy of the logs, not one per process
        logging.getLogger().setLevel(logging.WARNING)
    return accelerator


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's RNGs (every device)."""
    set_seed(seed)


def setup_logging() -> None:
    """Our INFO logs; transformers' own chatter (weight-loading bars, notices) only when it matters."""
    import transformers
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
