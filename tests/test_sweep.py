"""scripts/sweep.py and the sweep package on tiny models: a 2-task × 2-method × 2-seed manifest (each task's
teacher fine-tuned by the manifest's [prepare] run) with 2 runs at a time; one run killed mid-way (SIGKILL
at the start of its 4th optimizer step, after its step-2 checkpoint) and the sweep started again gives the
very table an uninterrupted sweep gives; the dry run prints the commands and a calibrated estimate; bad
manifests are refused in one line.

Runs are forked from the pre-warmed launcher (tests/launcher.py) through the runner's `spawn` hook, so each
costs ~2 s, not ~14 s of imports; the dry run's calibration starts real processes (the default spawn)."""
from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from distill.errors import UsageError
from sweep.manifest import load_manifest
from sweep.report import write_report
from sweep.runner import execute, is_finished, run_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_toy_stsb(task_dir: str, n_train: int, n_dev: int, seed: int) -> str:
    """A regression task in the STS-B layout (10 columns, sentences 7 and 8, score last): the score is high
    when both toy sentences have the same sentiment."""
    from distill.toy import toy_sentence
    rng = random.Random(seed)
    os.makedirs(task_dir, exist_ok=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        with open(os.path.join(task_dir, name), "w", encoding="utf-8") as f:
            f.write(header)
            for i in range(n):
                (a, la), (b, lb) = toy_sentence(rng), toy_sentence(rng)
                score = round(min(5.0, max(0.0, (4.0 if la == lb else 1.0) + rng.uniform(-1, 1))), 2)
                f.write(f"{i}\tmain\tx\t2024\t{i}\tnone\tnone\t{a}\t{b}\t{score}\n")
    return task_dir


@pytest.fixture(scope="module")
def data(toy, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_data")
    return {"sst2": toy["task"], "stsb": write_toy_stsb(str(root / "STS-B"), 64, 32, seed=3),
            "teacher": toy["teacher"], "student": toy["student"]}


def manifest_text(data, output_root, concurrency=2, extra="") -> str:
    common = ["--do_train", "--do_eval", "--max_seq_length", "32", "--per_device_train_batch_size", "16",
              "--per_device_eval_batch_size", "40", "--learning_rate", "1e-3", "--max_steps", "6",
              "--save_steps", "2", "--report_to", "none", "--disable_tqdm", "--logging_steps", "1"]
    q = json.dumps
    return f"""
script = {q(os.path.join(ROOT, "run_glue.py"))}
output_root = {q(str(output_root))}
seeds = [1, 2]
baseline = "kd"
concurrency = {concurrency}
common = {q(common)}

[prepare]   # each task's teacher: the toy teacher fine-tuned on the task
args = ["--model_name_or_path", {q(data["teacher"])}]

[tasks.sst2]
args = ["--task_name", "sst2", "--data_dir", {q(data["sst2"])}, "--model_name_or_path", {q(data["student"])}]

[tasks.stsb]
args = ["--task_name", "stsb", "--data_dir", {q(data["stsb"])}, "--model_name_or_path", {q(data["student"])}]

[methods.finetune]
args = []

[methods.kd]
args = ["--teacher_model", "{{prepared}}", "--alpha_kd", "0.5", "--temperature", "2"]
{extra}"""


def write_manifest(path, text) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


class WarmProcess:
    """A run forked by the pre-warmed launcher, with the interface of subprocess.Popen the runner uses."""

    def __init__(self, launch, job):
        self.launch, self.job, self.pid, self.status = launch, job, job.id, None

    def poll(self):
        if self.status is None:
            self.status = self.launch.poll(self.job)
        return self.status

    def kill(self):
        os.kill(self.pid, signal.SIGKILL)

    def wait(self):
        while self.poll() is None:
            time.sleep(0.05)
        return self.status


def warm_spawn(launch, kill: dict | None = None):
    """spawn(run, log) for the runner: the run's argv in a forked child; `kill` {run id: ("step", k)}."""
    def spawn(run, log):
        return WarmProcess(launch, launch.start(list(run.argv), kill=(kill or {}).get(run.id), log=log))
    return spawn


def rows_of(table):
    return json.loads(json.dumps(table["rows"]))


@pytest.fixture(scope="module")
def uninterrupted(data, launch, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_once")
    manifest = load_manifest(write_manifest(root / "m.toml", manifest_text(data, root / "out")))
    outcomes = run_sweep(manifest, spawn=warm_spawn(launch), echo=lambda *_: None)
    assert [o.status for o in outcomes] == ["finished"] * 10, [(o.run.id, o.status) for o in outcomes]
    return manifest, write_report(manifest, resamples=2000)


def test_the_table_holds_every_task_and_method_with_a_comparison_against_the_baseline(uninterrupted):
    manifest, table = uninterrupted
    assert table["missing"] == []
    assert [(r["task"], r["method"], r["seeds"]) for r in table["rows"]] == [
        ("sst2", "finetune", 2), ("sst2", "kd", 2), ("stsb", "finetune", 2), ("stsb", "kd", 2)]
    for row in table["rows"]:
        scores = []
        for seed in (1, 2):  # each seed's score is the run's own eval_results.json
            with open(os.path.join(manifest.output_root, row["task"], row["method"], f"seed{seed}",
                                   "eval_results.json")) as f:
                scores.append(json.load(f)[f"eval_{row['metric']}"])
        assert row["scores"] == {"1": scores[0], "2": scores[1]}
        assert row["mean"] == pytest.approx(sum(scores) / 2, abs=1e-12)
        assert ("vs_baseline" in row) == (row["method"] != "kd")
    assert {r["metric"] for r in table["rows"]} == {"accuracy", "combined_score"}
    out = manifest.output_root
    text = open(os.path.join(out, "results.md")).read()
    assert "| sst2 | finetune | accuracy | 2 |" in text and "Δ vs kd" in text
    for task in ("sst2", "stsb"):
        with open(os.path.join(out, f"{task}.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # the KD runs read the task's teacher that the prepare run fine-tuned
    with open(os.path.join(out, "stsb", "kd", "seed1", "run_args.json")) as f:
        assert os.path.join(out, "stsb", "prepare") in json.dumps(json.load(f))


def test_a_killed_run_resumes_and_the_table_equals_the_uninterrupted_sweep(data, launch, tmp_path, uninterrupted):
    """2 at a time; one run is SIGKILLed at the start of its 4th step: the sweep finishes the others, ends
    with that run failed and missing from the table; started again, it skips the 9 finished runs, the
    killed one resumes from its checkpoint, and every number of the table equals the uninterrupted one's."""
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", manifest_text(data, tmp_path / "out")))
    victim = "stsb/kd/seed2"
    outcomes = run_sweep(manifest, spawn=warm_spawn(launch, {victim: ("step", 4)}), echo=lambda *_: None)
    status = {o.run.id: o.status for o in outcomes}
    assert status.pop(victim) == "failed" and set(status.values()) == {"finished"}
    partial = write_report(manifest, resamples=2000)
    assert partial["missing"] == [victim]
    assert os.path.isdir(os.path.join(tmp_path, "out", "stsb", "kd", "seed2", "checkpoint-2"))

    started = []
    outcomes = run_sweep(manifest, spawn=warm_spawn(launch), echo=started.append)
    assert [m for m in started if m.startswith("started")] == [m for m in started if victim in m and "started" in m]
    assert {o.run.id: o.status for o in outcomes}[victim] == "finished"
    log = open(os.path.join(tmp_path, "out", ".sweep", "logs", "stsb__kd__seed2.log")).read()
    assert "resumed from" in log
    table = write_report(manifest, resamples=2000)
    assert table["missing"] == [] and rows_of(table) == rows_of(uninterrupted[1])


def test_a_changed_command_is_run_again_and_a_second_sweep_on_the_same_root_is_refused(data, tmp_path):
    from sweep.runner import marker_path, sweep_lock
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", manifest_text(data, tmp_path / "out")))
    run = manifest.runs[0]
    os.makedirs(os.path.dirname(marker_path(manifest, run)))
    with open(marker_path(manifest, run), "w") as f:
        json.dump({"argv": list(run.argv)}, f)
    assert not is_finished(manifest, run)  # its dir is gone: it runs again
    os.makedirs(run.output_dir)
    open(os.path.join(run.output_dir, "eval_predictions.json"), "w").close()
    assert is_finished(manifest, run)
    changed = load_manifest(write_manifest(tmp_path / "m2.toml", manifest_text(data, tmp_path / "out").replace(
        '"1e-3"', '"2e-3"')))
    assert not is_finished(changed, changed.runs[0])
    with sweep_lock(manifest), pytest.raises(UsageError, match="another sweep is running"):
        with sweep_lock(manifest):
            pass


def test_real_processes_and_the_dry_run_estimate(data, tmp_path, capsys):
    """The default spawn (a child process per run) through the dry run: every command printed, each
    command calibrated at 2 and 4 steps, an estimate for the runs left."""
    import scripts.sweep as cli
    text = manifest_text(data, tmp_path / "out").replace("seeds = [1, 2]", "seeds = [1]")
    text = text[:text.index("[tasks.stsb]")] + text[text.index("[methods.finetune]"):]  # sst2 only
    text = text.replace("[methods.finetune]\nargs = []\n", "")  # kd only
    path = write_manifest(tmp_path / "m.toml", text)
    assert cli.main([path, "--dry_run", "--calibration_steps", "2,4"]) == 0
    out = capsys.readouterr().out
    assert "[pending ] sst2/prepare/seed1:" in out and "[pending ] sst2/kd/seed1:" in out and "--seed 1" in out
    assert "2 runs pending; estimated wall time at 2 at a time:" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("sst2 ")]
    assert [r[1] for r in rows] == ["prepare", "kd"]
    assert all(float(r[2]) >= 0 and int(r[4]) == 6 for r in rows)  # the runs' own --max_steps 6
    assert not os.path.exists(tmp_path / "out" / "sst2" / "kd")  # nothing of the sweep itself ran


@pytest.mark.parametrize("change,message", [
    (lambda t: t.replace('baseline = "kd"', 'baseline = "lgtm"'), "baseline 'lgtm' is not one of the methods"),
    (lambda t: t.replace("seeds = [1, 2]", "seeds = [1, 1]"), "distinct integers"),
    (lambda t: t.replace('"--alpha_kd", "0.5"', '"--seed", "3"'), "--seed is set by the sweep"),
    (lambda t: t.replace("{prepared}", "{teacher}"), "unknown placeholder {teacher}"),
    (lambda t: t.replace("{prepared}", "{env[NOT_SET_ANYWHERE]}"), "NOT_SET_ANYWHERE, which is not set"),
    (lambda t: t.replace("seeds = [1, 2]", "seeds = [true, false]"), "distinct integers"),
    (lambda t: t.replace('"--do_eval", ', ""), "add --do_eval"),
    (lambda t: t.replace("run_glue.py", "run_imdb_w_distillation.py"), "other entry scripts are not supported"),
    (lambda t: t.replace("[methods.kd]", "[methods.'k d']"), "letters, digits"),
    (lambda t: t + "\nextra_key = 1\n", "unknown key(s) extra_key"),
    (lambda t: t.replace("run_glue.py", "nope/run_glue.py"), "not found"),
    (lambda t: t + "\n[methods.x\n", "not valid TOML"),
])
def test_bad_manifests_are_refused_in_one_line(data, tmp_path, capsys, change, message):
    import scripts.sweep as cli
    path = write_manifest(tmp_path / "m.toml", change(manifest_text(data, tmp_path / "out")))
    assert cli.main([path]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not os.path.exists(tmp_path / "out")


def test_a_failed_preparation_blocks_its_task_only(data, launch, tmp_path):
    teacher = json.dumps(data["teacher"])
    prepare = f'args = ["--model_name_or_path", {teacher}]'
    text = manifest_text(data, tmp_path / "out").replace(prepare, prepare[:-1] + ', "--learning_rate", "-1"]')
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", text))
    outcomes = run_sweep(manifest, spawn=warm_spawn(launch), echo=lambda *_: None)
    assert {o.status for o in outcomes if o.run.method == "prepare"} == {"failed"}
    assert {o.status for o in outcomes if o.run.method != "prepare"} == {"blocked"}
    assert execute(manifest, [], 1) == []


def test_old_results_of_a_changed_command_are_not_in_the_table(uninterrupted, tmp_path):
    """After a method's flags change, its runs' dirs hold results of the old command: the table lists them as
    missing instead of reporting them under the new flags."""
    from sweep.report import collect
    manifest, _ = uninterrupted
    text = open(manifest.path, encoding="utf-8").read().replace('"--alpha_kd", "0.5"', '"--alpha_kd", "0.7"')
    changed = load_manifest(write_manifest(tmp_path / "changed.toml", text))
    table = collect(changed, resamples=200)
    assert sorted(table["missing"]) == sorted(r.id for r in changed.runs if r.method == "kd")
    assert {row["method"] for row in table["rows"]} == {"finetune"}


def test_a_launchers_workers_left_by_a_killed_sweep_are_killed_when_it_starts_again(data, tmp_path):
    """A run started as its own process group (as the runner starts them) whose launcher died, leaving its
    worker (as torchrun's outlive it): the next sweep kills the worker, which names the run's dir, and leaves a
    process that does not alone."""
    import subprocess
    import sys

    from sweep.runner import reap_stale, state_dir
    manifest = load_manifest(write_manifest(tmp_path / "m.toml", manifest_text(data, tmp_path / "out")))
    run = manifest.runs[0]
    sleeper = f"import time; time.sleep(120)  # {run.output_dir}"
    leader = subprocess.Popen(["bash", "-c", f'{sys.executable} -c "{sleeper}" {run.output_dir} & '
                               f'{sys.executable} -c "import time; time.sleep(120)" & wait'],
                              start_new_session=True)
    time.sleep(1.0)
    members = [int(p) for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{p}/stat")
               and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[2] == str(leader.pid)]
    os.makedirs(state_dir(manifest))
    with open(os.path.join(state_dir(manifest), "running.json"), "w") as f:
        json.dump({run.id: {"pid": leader.pid, "output_dir": run.output_dir}}, f)
    leader.kill()
    leader.wait()
    try:
        killed = reap_stale(manifest)
        assert len(killed) == 1 and killed[0] in members
        time.sleep(0.3)
        alive = [p for p in members if os.path.exists(f"/proc/{p}") and "Z" not in open(f"/proc/{p}/stat").read()
                 .rsplit(")", 1)[1].split()[0]]
        assert len(alive) == 1 and alive[0] != killed[0]  # the process that does not name the run's dir
    finally:
        for p in members:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


def test_runs_of_a_task_scored_on_other_dev_data_are_refused(uninterrupted, tmp_path):
    """The comparison pairs runs example by example: a run whose dev labels differ (another --max_eval_samples,
    another data dir) makes the table refuse in one line rather than compare unlike sets."""
    import shutil

    from sweep.report import collect
    manifest, _ = uninterrupted
    copy_root = tmp_path / "out"
    shutil.copytree(manifest.output_root, copy_root)
    text = open(manifest.path, encoding="utf-8").read().replace(json.dumps(manifest.output_root),
                                                                json.dumps(str(copy_root)))
    copied = load_manifest(write_manifest(tmp_path / "m.toml", text))
    # the markers hold the old output dirs: a copied root's runs count as finished only with their own commands
    for run in copied.runs:
        from sweep.runner import marker_path
        with open(marker_path(copied, run), "w") as f:
            json.dump({"argv": list(run.argv)}, f)
    path = copy_root / "stsb" / "kd" / "seed2" / "eval_predictions.json"
    predictions = json.loads(path.read_text())
    predictions["labels"][0] += 1.0
    path.write_text(json.dumps(predictions))
    with pytest.raises(UsageError, match="stsb: kd/seed2 was scored on other dev data"):
        collect(copied, resamples=100)
