"""`checkpoint-<step>/` dirs: everything a resumed run needs to continue exactly.

A checkpoint is written to a temporary dir and renamed into place, so a run killed while saving
leaves the previous checkpoint intact and usable. It holds the plain model (safetensors), the
trainer state (JSON), the flags that define the run (run_flags.json) and `training_state.pt`: the
optimizer, scheduler, teacher and RNG states as tensors, numbers, strings and containers only. That
file is read with `torch.load(weights_only=True)`, which refuses anything else, so a checkpoint
handed over by someone else cannot run code when it is resumed.

Under --fsdp (distill/sharding.py) the training model and its optimizer are kept as
torch.distributed.checkpoint shards in `sharded/` instead (one file per process, readable by any
number of processes); `model.safetensors` is still the plain, full model and `training_state.pt` holds
everything else.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from distill.errors import UsageError
from distill.io_utils import atomic_dir, atomic_write_json, set_file_modes

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
TRAINING_FILE = "training_state.pt"
FLAGS_FILE = "run_flags.json"


@dataclass
class TrainerState:
    global_step: int = 0
    epoch: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    log_history: list[dict] = field(default_factory=list)
    # Running sums of the step logs since the last logged step, checkpointed so that a resumed run
    # logs exactly what an uninterrupted one would.
    log_window: dict = field(default_factory=dict)
    train_loss_sum: float = 0.0  # Σ of the per-step total loss, for train_loss
    train_runtime: float = 0.0  # seconds of training over every session, up to the last checkpoint
    # What plug-ins report for the record (a teacher that learns: teacher_best_metric, teacher_best_step),
    # written at the top level of trainer_state.json. They keep their own state in training_state.pt.
    extra: dict = field(default_factory=dict)

    def add_step_logs(self, logs: dict[str, float]) -> None:
        """One optimizer step's logs into the running window (its sums and its number of steps)."""
        for key, value in logs.items():
            self.log_window[key] = self.log_window.get(key, 0.0) + value
        self.log_window["_n"] = self.log_window.get("_n", 0) + 1

    def pop_window(self) -> dict[str, float]:
        """The mean of every log over the steps since the last logged one; the window starts over."""
        window, self.log_window = self.log_window, {}
        n = window.pop("_n")
        return {k: v / n for k, v in window.items()}

    def train_metrics(self, examples: int) -> dict[str, float]:
        """train_results.json: the run's time, speed and mean loss, over every session."""
        return {"train_runtime": round(self.train_runtime, 3), "train_samples": examples,
                "train_steps_per_second": round(self.global_step / max(self.train_runtime, 1e-9), 3),
                "train_loss": self.train_loss_sum / max(self.global_step, 1), "epoch": round(self.epoch, 4),
                "total_optimizer_steps": self.global_step}

    def save(self, path: str) -> None:
        data = asdict(self)
        atomic_write_json(path, data | data.pop("extra"))

    @classmethod
    def load(cls, path: str) -> "TrainerState":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})


def list_checkpoints(output_dir: str) -> list[str]:
    """checkpoint-<step> dirs of output_dir, oldest first."""
    if not os.path.isdir(output_dir):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(output_dir) if (m := CHECKPOINT_RE.match(name))]
    return [os.path.join(output_dir, name) for _, name in sorted(found)]


def rng_state() -> dict:
    """Every RNG's state as tensors and plain numbers (numpy's array becomes a tensor), so that
    `weights_only` loading can read it."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                    cached_gaussian], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str, *, model, tokenizer, optimizer, scheduler, state: TrainerState,
                    teacher_state: dict, process_rng: list[dict], student_state: dict | None = None,
                    source_state: list | None = None, run_flags: dict | None = None,
                    shards_dir: str | None = None) -> None:
    """Write a complete checkpoint atomically (temp dir, then rename). `model` is the plain model;
    `process_rng`, each process's RNG states (`rng_state()`), by rank;
    `student_state`, when given, the training model's own state (e.g. MPO cores) for an exact resume;
    `source_state`, each process's batch-source state (MiniLLM's rollout buffer); `run_flags`, the
    flags that define the run (a resume with other flags is refused); `shards_dir`, the model's and
    optimizer's shards (--fsdp), already written by every process: moved in as `sharded/`, and the
    optimizer is not saved again."""
    with atomic_dir(path, f"checkpoint {path}") as tmp:
        save_model_files(tmp, model, tokenizer)
        if shards_dir is not None:
            from distill.sharding import SHARDED_DIR
            os.replace(shards_dir, os.path.join(tmp, SHARDED_DIR))
        torch.save({"optimizer": optimizer.state_dict() if shards_dir is None else None,
                    "scheduler": scheduler.state_dict(),
                    "teacher": teacher_state, "rng": process_rng, "student": student_state,
                    "source": source_state or []},
                   os.path.join(tmp, TRAINING_FILE))
        state.save(os.path.join(tmp, STATE_FILE))
        if run_flags is not None:
            atomic_write_json(os.path.join(tmp, FLAGS_FILE), run_flags)


def restore_checkpoint(path: str, total_steps: int, *, student, transformed: bool, optimizer, scheduler, teacher,
                       source, rank: int, load_shards=None) -> TrainerState:
    """Load checkpoint `path` into a run's parts, as `save_checkpoint` wrote them; returns its trainer state.
    `student`: the training model (`transformed`: it differs from the saved plain model, so its own state
    was kept); `source`: the batch source, given this process's (`rank`) state; `load_shards(dir)`: under
    --fsdp, loads the model's and optimizer's shards (every process calls it)."""
    from distill.sharding import SHARDED_DIR
    training, state = load_training_state(path)
    sharded = os.path.isdir(os.path.join(path, SHARDED_DIR))
    if sharded != (load_shards is not None):
        made = "with" if sharded else "without"
        raise UsageError(f"{path} was written {made} --fsdp; resume with the flags of that run, or start over with "
                         "--overwrite_output_dir")
    if state.global_step > total_steps:
        raise UsageError(f"{path} is at step {state.global_step}, beyond this run's {total_steps} steps; resume "
                         "with the flags that made it, or start over with --overwrite_output_dir")
    raw = training.get("student")
    if (raw is None) == transformed:
        made = "with" if raw is not None else "without"
        raise UsageError(f"{path} was written {made} a model transform (--use_opdf); resume with the flags of "
                         "that run, or start over with --overwrite_output_dir")
    if sharded:  # the exact training state, resharded to this run's processes
        load_shards(os.path.join(path, SHARDED_DIR))
    elif raw is None:
        load_model_weights(student, os.path.join(path, "model.safetensors"))
    else:
        student.load_state_dict(raw)
    if not sharded:
        optimizer.load_state_dict(training["optimizer"])
    scheduler.load_state_dict(training["scheduler"])
    teacher.load_state_dict(training["teacher"])
    rngs = training["rng"] if isinstance(training["rng"], list) else [training["rng"]]  # (older: the main's only)
    # this process's own RNG; on another number of processes the main process's (not an exact resume anyway)
    set_rng_state(rngs[rank] if rank < len(rngs) else rngs[0])
    sources = training.get("source") or []
    source.load_state_dict(sources[rank] if rank < len(sources) else {})
    return state


def save_model_files(directory: str, model, tokenizer=None) -> None:
    """A Hugging Face model dir: `model` (and `tokenizer`) saved into `directory`, every file readable as
    the user's umask allows (transformers writes the weights through a 0600 temporary file)."""
    os.makedirs(directory, exist_ok=True)
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    set_file_modes(directory)


def load_training_state(path: str) -> tuple[dict, TrainerState]:
    """The optimizer/scheduler/teacher/RNG state and the trainer state of a checkpoint."""
    state_file, training_file = os.path.join(path, STATE_FILE), os.path.join(path, TRAINING_FILE)
    if not (os.path.isfile(state_file) and os.path.isfile(training_file)):
        raise UsageError(f"{path} is not a complete checkpoint (needs {STATE_FILE} and {TRAINING_FILE}); "
                         "resume from another checkpoint-<step> dir or start over with --overwrite_output_dir")
    try:
        # weights_only: tensors, numbers, strings and containers; a pickled object (code) is refused
        training = torch.load(training_file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UsageError(f"{training_file} holds pickled objects other than tensors and numbers, which could run "
                         "code when loaded: refused. Resume from a checkpoint this toolkit wrote, or start over with "
                         "--overwrite_output_dir") from None
    except Exception as e:
        raise UsageError(f"checkpoint {path} is corrupt ({type(e).__name__}); resume from an earlier "
                         "checkpoint-<step> dir or start over with --overwrite_output_dir") from None
    try:
        return training, TrainerState.load(state_file)
    except Exception as e:
        raise UsageError(f"checkpoint {path} is corrupt ({type(e).__name__}); resume from an earlier "
                         "checkpoint-<step> dir or start over with --overwrite_output_dir") from None


def load_model_weights(model, path: str) -> None:
    """Load a saved `model.safetensors` into `model` (see load_state_checked)."""
    from safetensors.torch import load_file

    load_state_checked(model, load_file(path), path)


def load_state_checked(model, state: dict, where: str) -> None:
    """Load `state` into `model`, strictly: every key must match, except keys that save_pretrained
    dropped because they are tied to (share storage with) a saved one."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    current = model.state_dict()
    loaded = {current[k].data_ptr() for k in state if k in current}
    untied_missing = [k for k in missing if current[k].data_ptr() not in loaded]
    if unexpected or untied_missing:
        raise UsageError(f"{where} does not fit the model (missing {untied_missing[:3]}, unexpected "
                         f"{unexpected[:3]}); resume with the same model flags, or start over with "
                         "--overwrite_output_dir")


def rotate_checkpoints(output_dir: str, limit: int | None, keep: tuple[int | None, ...] = ()) -> None:
    """Keep the newest `limit` checkpoints, and those of the steps in `keep` (the best models)."""
    if not limit:
        return
    kept = {f"checkpoint-{step}" for step in keep if step is not None}
    for path in list_checkpoints(output_dir)[:-limit]:
        if os.path.basename(path) not in kept:
            shutil.rmtree(path, ignore_errors=True)
