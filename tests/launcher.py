"""Start entry-script runs as real, separate processes, fast.

A fresh interpreter spends ~7 s importing torch and transformers before a toy run's 2 s of work. The
server here imports the entry scripts once, then forks one child per run: a process of its own (its
pid, its stdout/stderr in a log file, killable with SIGKILL, its locks dropped by the kernel when it
dies) that starts in a fraction of a second. The server runs no torch op before forking, so the child
starts from the same state a fresh process has after its imports.

    with Launcher() as launch:
        job = launch.start(["run_glue.py", "--flags", ...], kill=("step", 5))  # see tests/kill_at.py
        code, log = job.wait()   # code: the exit status, -9 when the run was killed, -1000 when it hung
        results = launch.run_processes(["run_glue.py", ...], 2)  # one run as 2 processes (gloo), as torchrun

Only for tests: the child's kill hooks come from tests/kill_at.py.
"""
from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("run_glue", "run_squad_w_distillation", "run_imdb_w_distillation", "train_lm_distill")
TIMEOUT = 300  # seconds a run may take
TIMED_OUT = -1000  # the status of a run the launcher had to kill


class Job:
    def __init__(self, launcher: "Launcher", job_id: int, log: str):
        self.launcher, self.id, self.log = launcher, job_id, log

    def wait(self) -> tuple[int, str]:
        """(exit status, or -signal number; what the run printed on stdout and stderr)."""
        reply = self.launcher._ask({"wait": self.id})
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return reply["status"], f.read()


class Launcher:
    def __init__(self, log_dir: str, env: dict | None = None):
        self.log_dir = log_dir
        self.count = 0
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
        self.server = subprocess.Popen([sys.executable, os.path.abspath(__file__)], cwd=REPO_ROOT, env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._read() == {"ready": True}

    def start(self, argv: list, kill: tuple[str, object] | None = None, env: dict | None = None,
              log: str | None = None) -> Job:
        """`log`: where the run's output goes (default: a new file in the launcher's log dir)."""
        self.count += 1
        log = log or os.path.join(self.log_dir, f"job{self.count}.log")
        reply = self._ask({"start": [str(a) for a in argv], "kill": [str(k) for k in kill] if kill else None,
                           "log": log, "env": env or {}})
        return Job(self, reply["id"], log)

    def poll(self, job: Job) -> int | None:
        """The job's exit status, or None while it runs (then `wait` or `poll` it again)."""
        return self._ask({"poll": job.id})["status"]

    def run(self, argv: list, kill: tuple[str, object] | None = None) -> tuple[int, str]:
        return self.start(argv, kill).wait()

    def run_processes(self, argv: list, n: int, kill: tuple[str, object] | None = None) -> list[tuple[int, str]]:
        """One run as `n` processes on this machine, with the environment torchrun gives them (ranks, the
        rendezvous address): [(exit status, log)] by rank."""
        import socket
        with socket.socket() as s:  # a port nothing listens on now
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        jobs = [self.start(argv, kill, env={"RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": n, "LOCAL_WORLD_SIZE": n,
                                             "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
                for rank in range(n)]
        return [job.wait() for job in jobs]

    def _ask(self, message: dict) -> dict:
        self.server.stdin.write(json.dumps(message) + "\n")
        self.server.stdin.flush()
        return self._read()

    def _read(self) -> dict:
        line = self.server.stdout.readline()
        if not line:
            raise RuntimeError("the launcher server died")
        return json.loads(line)

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)

    def __enter__(self) -> "Launcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- server
def serve() -> None:
    sys.path.insert(0, REPO_ROOT)
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
    import kill_at
    for name in SCRIPTS:
        __import__(name)
    reply = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the pipe
    children = {}

    def answer(message: dict) -> None:
        reply.write(json.dumps(message) + "\n")
        reply.flush()

    answer({"ready": True})
    for line in sys.stdin:
        message = json.loads(line)
        if "wait" in message:
            answer({"status": wait(children.pop(message["wait"]))})
            continue
        if "poll" in message:  # {"status": exit status, or None while it runs}
            done, status = os.waitpid(message["poll"], os.WNOHANG)
            if done:
                children.pop(message["poll"])
            answer({"status": os.waitstatus_to_exitcode(status) if done else None})
            continue
        pid = os.fork()
        if pid == 0:  # the run
            run_child(message, kill_at)
        children[pid] = pid
        answer({"id": pid})


def wait(pid: int, limit: float = TIMEOUT) -> int:
    """The child's exit status; a child still running after `limit` seconds is killed (a hung run must
    fail its test, not the whole suite)."""
    deadline = time.time() + limit
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            print(f"launcher: run {pid} killed after {limit:.0f} s", file=sys.stderr)
            return TIMED_OUT
        time.sleep(0.02)


def run_child(message: dict, kill_at) -> None:
    code = 1
    try:
        fd = os.open(message["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        script, *argv = message["start"]
        os.environ.update({k: str(v) for k, v in message.get("env", {}).items()})
        if message["kill"]:
            kill_at.install(*message["kill"])
        sys.argv = [script, *argv]
        try:
            runpy.run_path(os.path.join(REPO_ROOT, script), run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve()
