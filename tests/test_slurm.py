"""scripts/slurm/: the sbatch template's srun/accelerate lines for 1 and 2 nodes (fake srun and
scontrol), the settings files' flags, and a 1-process launch through the template on this CPU."""
from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

import run_glue
import train_lm_distill
from distill.args import parse_command_line
from lm.args import translate_original_flags

SLURM = os.path.join(REPO_ROOT, "scripts", "slurm")
EXPERIMENTS = sorted(glob.glob(os.path.join(SLURM, "experiments", "*.sh")))
# what the settings files need from the user's environment
SETTINGS_ENV = {"TEACHER": "/models/teacher", "STUDENT": "/models/student", "STUDENT_CONFIG": "/cfg/distilbert.json",
                "CORPUS": "/data/corpus.txt", "DOLLY": "/data/dolly.jsonl", "LM_CORPUS": "/data/lm.txt",
                "GLUE_DIR": "/data/glue", "OUT": "/scratch/runs", "MODEL": "/scratch/runs/minillm",
                "DOLLY_TEST": "/data/dolly_test.jsonl"}


@pytest.fixture
def fake_slurm(tmp_path):
    """`scontrol show hostnames` lists node01..node02; `srun` records its argv (one line per call)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/usr/bin/env bash\nprintf 'node01\\nnode02\\n'\n")
    (bin_dir / "srun").write_text('#!/usr/bin/env bash\n'
                                  'printf "%q " "$@" >> "$FAKE_SRUN_LOG"; echo >> "$FAKE_SRUN_LOG"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_SRUN_LOG": str(tmp_path / "srun.log")}


def sbatch(settings, env, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", os.path.join(SLURM, "distill.sbatch"), settings, *extra], cwd=REPO_ROOT,
                          env={**os.environ, **SETTINGS_ENV, **env}, capture_output=True, text=True, check=True)


def allocation(nodes: int, gpus: int) -> dict:
    return {"SLURM_NNODES": str(nodes), "SLURM_GPUS_ON_NODE": str(gpus),
            "SLURM_JOB_NODELIST": "node[01-02]" if nodes == 2 else "node01"}


def test_two_nodes_one_launcher_each_with_the_total_process_count_and_c10d_on_the_head(fake_slurm):
    settings = os.path.join(SLURM, "experiments", "lgtm_mnli.sh")
    line = sbatch(settings, {**fake_slurm, **allocation(2, 4)}, "--dry-run").stdout.strip()
    tokens = shlex.split(line)
    assert tokens[:5] == ["srun", "--nodes", "2", "--ntasks-per-node", "1"]
    launch = tokens[5:tokens.index("run_glue.py")]
    assert launch[:2] == ["accelerate", "launch"]
    flat = " ".join(launch)
    for expected in ("--num_processes 8", "--num_machines 2", "--rdzv_backend c10d", "--main_process_ip node01",
                     "--main_process_port 29500", "--multi_gpu"):
        assert expected in flat
    assert "--machine_rank" not in flat and "SLURM_NODEID" not in flat  # c10d assigns the ranks
    assert tokens[tokens.index("run_glue.py") + 1:][:2] == ["--model_name_or_path", "/models/student"]
    assert "/scratch/runs/lgtm_mnli" in tokens
    # the job itself runs exactly that line through srun
    assert not os.path.exists(fake_slurm["FAKE_SRUN_LOG"])
    sbatch(settings, {**fake_slurm, **allocation(2, 4)})
    with open(fake_slurm["FAKE_SRUN_LOG"], encoding="utf-8") as f:
        recorded = ["srun", *shlex.split(f.read())]
    assert recorded == tokens


def test_one_node_runs_without_rendezvous_flags(fake_slurm):
    line = sbatch(os.path.join(SLURM, "experiments", "one2one_rte.sh"), {**fake_slurm, **allocation(1, 1)},
                  "--dry-run").stdout
    tokens = shlex.split(line)
    assert tokens[:5] == ["srun", "--nodes", "1", "--ntasks-per-node", "1"]
    launch = " ".join(tokens[5:tokens.index("run_glue.py")])
    assert "--num_processes 1 --num_machines 1" in launch
    assert "--multi_gpu" not in launch and "--rdzv_backend" not in launch and "--main_process_ip" not in launch
    multi = shlex.split(sbatch(os.path.join(SLURM, "experiments", "one2one_rte.sh"),
                               {**fake_slurm, **allocation(1, 8)}, "--dry-run").stdout)
    assert "--multi_gpu" in multi and multi[multi.index("--num_processes") + 1] == "8"


def test_submit_dry_run_prints_the_sbatch_and_srun_lines(fake_slurm):
    out = subprocess.run(["bash", os.path.join(SLURM, "submit.sh"), os.path.join(SLURM, "experiments",
                                                                                   "distilbert_mlm.sh"), "--dry-run"],
                         cwd=REPO_ROOT, env={**os.environ, **SETTINGS_ENV, **fake_slurm}, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    sbatch_line, srun_line = shlex.split(out[0]), shlex.split(out[1])
    assert sbatch_line[:2] == ["sbatch", "--job-name"] and "--nodes" in sbatch_line
    assert sbatch_line[sbatch_line.index("--nodes") + 1] == "2"
    assert sbatch_line[sbatch_line.index("--gpus-per-node") + 1] == "8"
    assert srun_line[srun_line.index("--num_processes") + 1] == "16"  # 2 nodes x 8 GPUs, from the settings


def test_the_fsdp_job_shards_a_hub_teacher_and_student_over_two_nodes(fake_slurm):
    """fsdp_lm_7b_to_1b.sh with the defaults users get: Hub ids, 2 nodes x 8 GPUs, --fsdp full_shard, bf16."""
    env = {k: v for k, v in SETTINGS_ENV.items() if k not in ("TEACHER", "STUDENT")}
    settings = os.path.join(SLURM, "experiments", "fsdp_lm_7b_to_1b.sh")
    out = subprocess.run(["bash", os.path.join(SLURM, "submit.sh"), settings, "--dry-run"], cwd=REPO_ROOT,
                         env={**{k: v for k, v in os.environ.items() if k not in ("TEACHER", "STUDENT")}, **env,
                              **fake_slurm}, capture_output=True, text=True, check=True).stdout.splitlines()
    sbatch_line, tokens = shlex.split(out[0]), shlex.split(out[1])
    assert sbatch_line[sbatch_line.index("--nodes") + 1] == "2"
    assert tokens[tokens.index("--num_processes") + 1] == "16" and "--rdzv_backend" in tokens
    args = tokens[tokens.index("train_lm_distill.py") + 1:]
    value = lambda flag: args[args.index(flag) + 1]  # noqa: E731
    assert value("--teacher_name_or_path") == "Qwen/Qwen2.5-7B" and value("--model_name_or_path") == "Qwen/Qwen2.5-1.5B"
    assert value("--fsdp") == "full_shard" and "--bf16" in args
    parsed = parse_command_line(train_lm_distill.FLAGS, args)
    train_args = next(p for p in parsed if hasattr(p, "fsdp"))
    train_args.default_actions()  # (the script trains and evaluates when no --do_* is given)
    train_args.validate()  # the --fsdp flags agree with the rest


@pytest.mark.parametrize("settings", EXPERIMENTS, ids=os.path.basename)
def test_every_experiment_s_flags_are_accepted_by_its_script(settings):
    script_and_args = subprocess.run(
        ["bash", "-c", 'source "$1"; printf "%s\\0" "$SCRIPT" "${ARGS[@]}"', "_", settings],
        env={**os.environ, **SETTINGS_ENV}, capture_output=True, text=True, check=True).stdout.split("\0")[:-1]
    script, args = script_and_args[0], script_and_args[1:]
    module = {"run_glue.py": run_glue, "train_lm_distill.py": train_lm_distill}[script]
    if module is train_lm_distill:
        args = translate_original_flags(args)
    parsed = parse_command_line(module.FLAGS, args)  # unknown flags or bad values raise
    assert any(getattr(p, "output_dir", "").startswith("/scratch/runs/") for p in parsed if hasattr(p, "output_dir"))


def test_a_one_process_job_runs_through_the_template_on_this_cpu(toy, fake_slurm, tmp_path):
    """srun replaced by a pass-through: the template's accelerate line really trains (1 CPU process)."""
    bin_dir = fake_slurm["PATH"].split(":")[0]
    with open(os.path.join(bin_dir, "srun"), "w") as f:  # drop srun's own options, run the rest
        f.write('#!/usr/bin/env bash\nwhile [[ "$1" == --* ]]; do shift 2; done\nexec "$@"\n')
    out = tmp_path / "out"
    settings = tmp_path / "toy.sh"
    settings.write_text(
        "SCRIPT=run_glue.py\n"
        f"ARGS=(--model_name_or_path {toy['student']} --teacher_model {toy['teacher']} --task_name sst2 "
        f"--data_dir {toy['task']} --do_train --do_eval --max_steps 2 --per_device_train_batch_size 8 "
        f"--max_seq_length 32 --use_cpu --disable_tqdm --report_to none --output_dir {out})\n")
    env = {**fake_slurm, **allocation(1, 1), "PATH": f"{os.path.dirname(sys.executable)}:{fake_slurm['PATH']}"}
    sbatch(str(settings), env)
    assert (out / "eval_results.json").is_file() and (out / "model.safetensors").is_file()
