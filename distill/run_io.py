"""The files a training run writes into its output dir: model dirs, the final model, checkpoints, results
and TensorBoard events. Every write is atomic (distill/io_utils.py) and made by the main process; the
methods that synchronise processes say so."""
from __future__ import annotations

import json
import os
import shutil

from accelerate.utils import gather_object

from distill.checkpoint import TrainerState, rotate_checkpoints, save_checkpoint, save_model_files
from distill.errors import UsageError
from distill.io_utils import atomic_dir, atomic_write_json, writing
from distill.run_dir import RunStart, read_flags
from distill.sharding import SHARDED_DIR


class RunFiles:
    """One run's output dir. `start` (distill/run_dir.py) says how the run starts in it; the dir becomes
    this run's (`claim`) just before training's first write."""

    def __init__(self, args, accelerator, tokenizer=None):
        self.args, self.accelerator, self.tokenizer = args, accelerator, tokenizer
        self.start: RunStart | None = None
        self.resumed_from: str | None = None  # the checkpoint this session resumed from
        self._claimed = False
        self._events = None  # the TensorBoard writer, opened with the first logged step
        self._purge_step: int | None = None

    @property
    def output_dir(self) -> str:
        return self.args.output_dir

    def claim(self) -> None:
        """Before training's first write: make the output dir this run's (a fresh start clears what an
        earlier run left there). Not earlier: a run that fails first (bad input, a NaN at step 1) must
        leave the dir as it was, also under --overwrite_output_dir."""
        if not self._claimed and self.start is not None and self.accelerator.is_main_process:
            self.start.claim()
        self._claimed = True

    # ------------------------------------------------------------------ TensorBoard
    def begin_session(self, first_step: int) -> None:
        """Training (re)starts at `first_step`: a resumed run drops the events that a killed attempt
        logged after its checkpoint."""
        self._purge_step = first_step if first_step > 1 else None

    def scalars(self, logs: dict, step: int) -> None:
        if not self.accelerator.is_main_process or self.args.report_to != "tensorboard":
            return
        if self._events is None:
            from torch.utils.tensorboard import SummaryWriter
            self._events = SummaryWriter(self._events_dir(), purge_step=self._purge_step)
        for key, value in logs.items():
            if isinstance(value, (int, float)):
                self._events.add_scalar(key, value, step)

    def end_session(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def _events_dir(self) -> str:
        return self.args.logging_dir or os.path.join(self.output_dir, "runs")

    # ------------------------------------------------------------------ models
    def save_model_dir(self, model, dir_name: str) -> str:
        """`model` (plus the tokenizer) as output_dir/dir_name, replacing an earlier copy as a whole."""
        path = os.path.join(self.output_dir, dir_name)
        if self.accelerator.is_main_process:
            with atomic_dir(path) as tmp:
                save_model_files(tmp, model, self.tokenizer)
        return path

    def save_final_model(self, model, state: TrainerState, output_dir: str) -> None:
        """`model` (plus tokenizer) into `output_dir` itself, file by file: a kill leaves each file either
        old or new (the dir holds the run's other files, so it cannot be swapped as a whole); then
        trainer_state.json. Synchronises processes."""
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return
        tmp = os.path.join(output_dir, ".model.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with writing(f"the final model to {output_dir}", cleanup=tmp):
            save_model_files(tmp, model, self.tokenizer)
            for name in os.listdir(tmp):
                os.replace(os.path.join(tmp, name), os.path.join(output_dir, name))
            os.rmdir(tmp)
        state.save(os.path.join(output_dir, "trainer_state.json"))

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, *, state: TrainerState, model, optimizer, scheduler, teacher_state: dict,
                        process_rng: dict, student_state: dict | None, source_state: dict,
                        keep: tuple[int | None, ...], shards=None) -> None:
        """checkpoint-<step> (distill/checkpoint.py), then the rotation that spares the steps in `keep`.
        Synchronises processes: each one's batch-source and RNG states are kept (MiniLLM's rollout buffers,
        each process's masks and dropout differ).
        `shards(dir)` (--fsdp) writes the model's and optimizer's shards, every process its own: into a
        temporary dir first (`.tmp-*`, removed by the next run if a kill comes), which the main process then
        moves into the checkpoint before it is renamed into place."""
        acc = self.accelerator
        acc.wait_for_everyone()
        self.claim()
        path = os.path.join(self.output_dir, f"checkpoint-{state.global_step}")
        staged = None
        if shards is not None:
            staged = os.path.join(self.output_dir, f".tmp-checkpoint-{state.global_step}-{SHARDED_DIR}")
            if acc.is_main_process:
                shutil.rmtree(staged, ignore_errors=True)
            acc.wait_for_everyone()
            with writing(f"checkpoint {path}", cleanup=staged):
                shards(staged)
            acc.wait_for_everyone()
        # every process's own batch-source and RNG states (MLM masks, dropout: each process draws its own)
        source_states = gather_object([source_state]) if acc.num_processes > 1 else [source_state]
        rng_states = gather_object([process_rng]) if acc.num_processes > 1 else [process_rng]
        if acc.is_main_process:
            save_checkpoint(path, model=model,
                            tokenizer=self.tokenizer, optimizer=optimizer, scheduler=scheduler, state=state,
                            teacher_state=teacher_state, process_rng=rng_states, student_state=student_state,
                            source_state=source_states, run_flags=self.start.flags if self.start else None,
                            shards_dir=staged)
            rotate_checkpoints(self.output_dir, self.args.save_total_limit, keep=keep)
        acc.wait_for_everyone()

    def checkpoint_of(self, step: int, what: str) -> str:
        """checkpoint-<step> of this run (made with its flags): in the output dir, or beside the checkpoint
        it resumed from."""
        places = [self.output_dir] + ([os.path.dirname(self.resumed_from)] if self.resumed_from else [])
        for place in places:
            path = os.path.join(place, f"checkpoint-{step}")
            if os.path.isdir(path) and (self.start is None or read_flags(path) == self.start.flags):
                return path
        raise UsageError(f"the {what} of this run is checkpoint-{step}, which is missing from {places[0]}; restore it, "
                         "or start over with --overwrite_output_dir")

    # ------------------------------------------------------------------ results
    def save_metrics(self, split: str, metrics: dict) -> None:
        """`<split>_results.json`, merged into `all_results.json` (HF layout)."""
        if not self.accelerator.is_main_process:
            return
        atomic_write_json(os.path.join(self.output_dir, f"{split}_results.json"), metrics)
        all_path = os.path.join(self.output_dir, "all_results.json")
        merged = {}
        if os.path.isfile(all_path):
            with open(all_path, encoding="utf-8") as f:
                merged = json.load(f)
        atomic_write_json(all_path, merged | metrics)
