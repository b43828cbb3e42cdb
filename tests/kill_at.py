"""Run an entry script and SIGKILL it from inside at a chosen moment, as a cluster's OOM killer or a
pre-empted node would: no exception, no `finally`, no flushing, no lock released.

    python tests/kill_at.py step K        run_glue.py --flags ...  # at the start of optimizer step K
    python tests/kill_at.py rename NAME   run_glue.py --flags ...  # NAME (checkpoint-K, teacher) is fully
                                                                   # written in its temporary dir, not yet
                                                                   # renamed into place
    python tests/kill_at.py final_save 1  run_glue.py --flags ...  # the final model half moved into place
                                                                   # (one file new, the others old)
    python tests/kill_at.py write NAME    run_glue.py --flags ...  # just before the file NAME is written
                                                                   # (train_results.json, SST-2.tsv, ...)
    python tests/kill_at.py hold PATH     run_glue.py --flags ...  # at step 1, create PATH.reached and
                                                                   # wait until PATH exists (a run busy
                                                                   # for as long as a test needs)
    python tests/kill_at.py fsize K:BYTES run_glue.py --flags ...  # from step K on, no file may grow
                                                                   # beyond BYTES (writes fail with
                                                                   # EFBIG, as on a full disk)
"""
from __future__ import annotations

import os
import runpy
import signal
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(where: str, arg: str) -> None:
    import distill.io_utils
    from distill.trainer import DistillationTrainer

    if where in ("step", "hold", "fsize"):
        real_step, calls = DistillationTrainer.optimizer_step, {"n": 0}

        def step(self, micro):
            calls["n"] += 1
            if where == "step" and calls["n"] == int(arg):
                die()
            if where == "hold" and calls["n"] == 1:
                open(arg + ".reached", "w").close()
                while not os.path.exists(arg):
                    time.sleep(0.05)
            if where == "fsize" and calls["n"] == int(arg.split(":")[0]):
                import resource
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
                limit = int(arg.split(":")[1])
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            return real_step(self, micro)
        DistillationTrainer.optimizer_step = step
    elif where == "rename":
        real_replace = distill.io_utils.replace_dir

        def replace(tmp, final):
            if os.path.basename(final) == arg:
                die()
            real_replace(tmp, final)
        distill.io_utils.replace_dir = replace  # every dir write (checkpoints, teacher/) swaps in through it
    elif where == "final_save":
        real_save, real_os_replace = DistillationTrainer.save_model, os.replace

        def save_model(self, *a, **k):
            moved = {"n": 0}

            def replace(src, dst):
                real_os_replace(src, dst)
                moved["n"] += 1
                if moved["n"] == int(arg):
                    die()
            os.replace = replace
            try:
                real_save(self, *a, **k)
            finally:
                os.replace = real_os_replace
        DistillationTrainer.save_model = save_model
    elif where == "write":
        real_atomic_path = distill.io_utils.atomic_path

        def atomic_path(path):
            if os.path.basename(path) == arg:
                die()
            return real_atomic_path(path)
        distill.io_utils.atomic_path = atomic_path
    else:
        raise SystemExit(f"kill_at.py: unknown place {where!r} (step, rename, final_save, write, hold or fsize)")


def main() -> None:
    where, arg, script, *argv = sys.argv[1:]
    sys.path.insert(0, REPO_ROOT)
    install(where, arg)
    sys.argv = [script, *argv]
    runpy.run_path(os.path.join(REPO_ROOT, script), run_name="__main__")


if __name__ == "__main__":
    main()
