"""Run an entry script and SIGKILL it from inside, as a cluster's OOM killer or a pre-empted node would:
no exception, no `finally`, no flushing.

    python tests/kill_at.py step K  run_glue.py --flags ...   # at the start of optimizer step K
    python tests/kill_at.py save K  run_glue.py --flags ...   # while checkpoint-K is being saved: its files
                                                              # are written, the rename not yet done
"""
from __future__ import annotations

import os
import runpy
import signal
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    where, step, script, *argv = sys.argv[1:]
    sys.path.insert(0, REPO_ROOT)
    import distill.checkpoint
    from distill.trainer import DistillationTrainer

    if where == "step":
        real_step, calls = DistillationTrainer.optimizer_step, {"n": 0}

        def killing_step(self, micro):
            calls["n"] += 1
            if calls["n"] == int(step):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_step(self, micro)
        DistillationTrainer.optimizer_step = killing_step
    elif where == "save":
        real_replace = distill.checkpoint.replace_dir

        def killing_replace(tmp, final):
            if os.path.basename(final) == f"checkpoint-{step}":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(tmp, final)
        distill.checkpoint.replace_dir = killing_replace
    else:
        raise SystemExit(f"kill_at.py: unknown place {where!r} (step or save)")
    sys.argv = [script, *argv]
    runpy.run_path(os.path.join(REPO_ROOT, script), run_name="__main__")


if __name__ == "__main__":
    main()
