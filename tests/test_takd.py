"""TAKD chains (takd/): the layer rule, 3-stage chains for GLUE and causal-LM KD end to end, each
stage's teacher being the previous stage's saved best model, resume, and refusals."""
from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import assert_same_run, crash_at_step, snapshot, toy_lm_corpus
from safetensors.torch import load_file
from toys import build_gpt2

import run_glue
import train_lm_distill
from distill.args import parse_command_line
from distill.modeling import load_source_config
from takd.args import spread_layers
from takd.chain import plan_stages, stage_argv

GLUE_FAST = ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32", "--max_seq_length", "48",
             "--disable_tqdm", "--report_to", "tensorboard", "--logging_steps", "2"]
STAGES = ["stage_1_3layers", "stage_2_2layers", "stage_3_student"]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def glue_ok(*argv):
    assert run_glue.main([str(a) for a in argv]) == 0


@pytest.fixture(scope="module")
def glue_teacher(toy, tmp_path_factory):
    """The toy 4-layer BERT fine-tuned on the toy task: the chain's first teacher."""
    out = str(tmp_path_factory.mktemp("takd_teacher"))
    glue_ok("--model_name_or_path", toy["teacher4"], "--task_name", "sst2", "--data_dir", toy["task"], "--do_train",
            "--do_eval", "--num_train_epochs", 3, "--learning_rate", 2e-3, "--output_dir", out,
            "--overwrite_output_dir", *GLUE_FAST)
    return out


def glue_chain_args(toy, teacher, out, *extra):
    """teacher (4 layers) -> TA of 3 layers -> TA of 2 -> a 1-layer student cut from the teacher's layer 0."""
    return ["--model_name_or_path", teacher, "--student_layers", "0", "--teacher_model", teacher,
            "--ta_models", "3,2", "--ta_epochs", 1, "--ta_learning_rates", "1e-3,2e-3", "--task_name", "sst2",
            "--data_dir", toy["task"], "--do_train", "--do_eval", "--num_train_epochs", 2, "--learning_rate", 2e-3,
            "--eval_strategy", "steps", "--eval_steps", 2, "--output_dir", out, *GLUE_FAST, *extra]


@pytest.fixture(scope="module")
def glue_chain(toy, glue_teacher, tmp_path_factory, monkeypatch_module):
    """One uninterrupted 3-stage chain; records each teacher that stage runs loaded."""
    out = str(tmp_path_factory.mktemp("takd_chain"))
    loaded = []
    real = run_glue.load_checked_teacher

    def spy(path, *args, **kwargs):
        model = real(path, *args, **kwargs)
        loaded.append((path, {k: v.clone() for k, v in model.state_dict().items()}))
        return model

    monkeypatch_module.setattr(run_glue, "load_checked_teacher", spy)
    glue_ok(*glue_chain_args(toy, glue_teacher, out))
    monkeypatch_module.setattr(run_glue, "load_checked_teacher", real)
    return {"out": out, "loaded": loaded, "teacher": glue_teacher}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_assistant_layers_are_evenly_spaced_keeping_the_first_and_last():
    assert spread_layers(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's choice
    assert spread_layers(6, 4) == [0, 2, 3, 5]
    assert spread_layers(6, 2) == [0, 5]
    assert spread_layers(4, 3) == [0, 2, 3]
    assert spread_layers(5, 5) == [0, 1, 2, 3, 4]
    assert spread_layers(6, 1) == [0]
    with pytest.raises(Exception, match="must not be larger"):
        spread_layers(3, 4)


def test_a_chain_from_an_argument_file_with_list_flags_builds_its_stages_from_the_parsed_values(toy, tmp_path):
    """Stages are built from the parsed flags (one parser), not from the file's values rewritten as words:
    OPDF's list-valued shapes reach every stage as they were given."""
    args = {"model_name_or_path": toy["student"], "teacher_model": toy["teacher4"], "ta_models": "2",
            "task_name": "sst2", "data_dir": toy["task"], "do_train": True, "do_eval": True, "max_steps": 2,
            "ta_max_steps": "2", "output_dir": str(tmp_path / "chain"), "use_opdf": True,
            "mpo_targets": "intermediate,output", "mpo_input_shape": ["4,2,4", "4,2,8"],
            "mpo_output_shape": ["4,2,8", "4,2,4"], "max_seq_length": 32, "report_to": "none",
            "disable_tqdm": True, "per_device_train_batch_size": 16}
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args))
    parsed = parse_command_line(run_glue.FLAGS, [str(path)])
    stages = plan_stages(parsed[-2], args["output_dir"], toy["teacher4"], load_source_config)
    argv = stage_argv(parsed, run_glue.CHAIN, stages[0], toy["teacher4"])
    staged = {f: v for p in parse_command_line(run_glue.FLAGS, argv) for f, v in vars(p).items()}
    assert staged["mpo_input_shape"] == ["4,2,4", "4,2,8"] and staged["mpo_output_shape"] == ["4,2,8", "4,2,4"]
    assert staged["ta_models"] is None and staged["student_layers"] == "0,3" and staged["max_steps"] == 2
    assert staged["model_name_or_path"] == os.path.realpath(toy["teacher4"])
    assert run_glue.main([str(path)]) == 0
    assert read_json(tmp_path / "chain" / "stage_2_student" / "run_flags.json")["mpo_input_shape"] == ["4,2,4", "4,2,8"]


def test_glue_chain_runs_every_stage_and_writes_the_summary(glue_chain, capsys):
    out = glue_chain["out"]
    summary = read_json(os.path.join(out, "takd_summary.json"))
    rows = summary["stages"]
    assert summary["metric"] == "accuracy" and summary["greater_is_better"] is True
    assert [r["name"] for r in rows] == ["teacher", "3layers", "2layers", "student"]
    assert [r["num_layers"] for r in rows] == [4, 3, 2, 1]
    sizes = [r["num_parameters"] for r in rows]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    for row, stage in zip(rows[1:], STAGES):
        stage_dir = os.path.join(out, stage)
        assert row["path"] == stage_dir
        for name in ("model.safetensors", "eval_results.json", "train_results.json", "trainer_state.json"):
            assert os.path.isfile(os.path.join(stage_dir, name)), (stage, name)
        assert os.listdir(os.path.join(stage_dir, "runs"))  # the stage's TensorBoard logs
        assert row["dev_metric"] == read_json(os.path.join(stage_dir, "eval_results.json"))["eval_accuracy"]
    # the teacher's row: measured by stage 1 on the same dev set
    assert rows[0]["dev_metric"] == read_json(os.path.join(out, STAGES[0], "teacher_eval_results.json"))[
        "teacher_eval_accuracy"]
    # per-stage budgets: the assistants ran 1 epoch at their own learning rates, the student 2 epochs at 2e-3
    steps = [read_json(os.path.join(out, s, "trainer_state.json"))["global_step"] for s in STAGES]
    assert steps == [6, 6, 12]
    first_lrs = [read_json(os.path.join(out, s, "trainer_state.json"))["log_history"][0]["learning_rate"]
                 for s in STAGES]
    assert first_lrs[0] * 2 == pytest.approx(first_lrs[1])  # the same schedule from 1e-3 and from 2e-3
    assert first_lrs[2] == pytest.approx(2e-3 * (1 - 1.5 / 12))  # the student's 2e-3, logged as the mean of steps 1-2


def test_each_stage_learns_from_the_previous_stage_s_saved_best_model(glue_chain):
    out, loaded = glue_chain["out"], glue_chain["loaded"]
    assert [path for path, _ in loaded] == [glue_chain["teacher"], os.path.join(out, STAGES[0]),
                                            os.path.join(out, STAGES[1])]
    for k in (1, 2):
        previous = os.path.join(out, STAGES[k - 1])
        saved = load_file(os.path.join(previous, "model.safetensors"))
        teacher_state = loaded[k][1]
        for key, value in saved.items():
            torch.testing.assert_close(teacher_state[key], value, rtol=0, atol=0)
        # the saved model is the best evaluated one, not the last
        state = read_json(os.path.join(previous, "trainer_state.json"))
        best = load_file(os.path.join(previous, f"checkpoint-{state['best_step']}", "model.safetensors"))
        assert all(torch.equal(best[key], saved[key]) for key in saved)
        # and stage k measured it on dev exactly as stage k-1 did
        stage_k = os.path.join(out, STAGES[k])
        assert read_json(os.path.join(stage_k, "teacher_eval_results.json"))["teacher_eval_accuracy"] == \
            read_json(os.path.join(previous, "eval_results.json"))["eval_accuracy"]
        assert read_json(os.path.join(stage_k, "takd_stage.json"))["teacher"] == previous


def test_layer_count_assistant_copies_evenly_spaced_layers_of_the_previous_model(toy, glue_teacher, tmp_path):
    """With a learning rate of 0 the assistant stays what it was built as: teacher layers 0 and 3."""
    out = str(tmp_path / "chain")
    glue_ok("--model_name_or_path", glue_teacher, "--student_layers", "0", "--teacher_model", glue_teacher,
            "--ta_models", "2", "--ta_learning_rates", "0", "--ta_max_steps", 1, "--max_steps", 1, "--task_name",
            "sst2", "--data_dir", toy["task"], "--do_train", "--do_eval", "--output_dir", out, *GLUE_FAST)
    teacher = load_file(os.path.join(glue_teacher, "model.safetensors"))
    ta = load_file(os.path.join(out, "stage_1_2layers", "model.safetensors"))
    prefix = "bert.encoder.layer."
    for key, value in ta.items():
        if key.startswith(prefix):
            layer, rest = key[len(prefix):].split(".", 1)
            source = f"{prefix}{[0, 3][int(layer)]}.{rest}"
        else:
            source = key  # embeddings, pooler and classifier
        torch.testing.assert_close(value, teacher[source], rtol=0, atol=0, msg=key)
    assert read_json(os.path.join(out, "takd_summary.json"))["stages"][1]["num_layers"] == 2


def test_resume_after_a_kill_in_stage_2_skips_stage_1_and_ends_like_the_uninterrupted_chain(
        toy, glue_chain, tmp_path, monkeypatch):
    out = str(tmp_path / "chain")
    argv = glue_chain_args(toy, glue_chain["teacher"], out)
    crash_at_step(monkeypatch, run_glue.main, argv, 6 + 3)  # stage 1 has 6 steps: killed at stage 2's step 3
    assert os.path.isfile(os.path.join(out, STAGES[0], "takd_stage.json"))
    assert not os.path.exists(os.path.join(out, STAGES[1], "takd_stage.json"))
    stage1_model = os.path.join(out, STAGES[0], "model.safetensors")
    before = (os.stat(stage1_model).st_mtime_ns, open(stage1_model, "rb").read())

    ran, real_run = [], run_glue.run

    def spy(stage_argv=None):
        ran.append(stage_argv[stage_argv.index("--output_dir") + 1] if "--ta_models" not in stage_argv else "chain")
        return real_run(stage_argv)

    monkeypatch.setattr(run_glue, "run", spy)
    glue_ok(*argv)
    assert ran == ["chain", os.path.join(out, STAGES[1]), os.path.join(out, STAGES[2])]
    assert (os.stat(stage1_model).st_mtime_ns, open(stage1_model, "rb").read()) == before
    for stage in STAGES:
        assert_same_run(os.path.join(glue_chain["out"], stage), os.path.join(out, stage))
    full = read_json(os.path.join(glue_chain["out"], "takd_summary.json"))["stages"]
    resumed = read_json(os.path.join(out, "takd_summary.json"))["stages"]
    assert [r["dev_metric"] for r in resumed] == [r["dev_metric"] for r in full]
    assert [r["weights_sha256"] for r in resumed] == [r["weights_sha256"] for r in full]


@pytest.mark.parametrize("change, message", [
    (["--ta_models", "3,2", "--ta_epochs", 1, "--max_steps", 4], "--ta_epochs with --max_steps"),
    (["--ta_models", "3,2", "--ta_learning_rates", "1e-3,1e-3,1e-3"], "one per assistant (2)"),
    (["--ta_models", "8"], "cannot copy 8 layers from a model of 4"),
    (["--ta_models", "3,,2"], "expected comma-separated"),
    (["--ta_models", "3", "--ta_epochs", 1, "--ta_max_steps", 2], "pass one"),
    (["--ta_models", "3", "--resume_from_checkpoint", "x"], "a chain resumes by itself"),
    (["--ta_models", "nowhere/no_such_model"], "could not load a model config"),
])
def test_bad_chain_flags_are_refused_in_one_line_before_anything_is_written(toy, glue_teacher, tmp_path, capsys,
                                                                            change, message):
    out = tmp_path / "chain"
    argv = ["--model_name_or_path", glue_teacher, "--teacher_model", glue_teacher, "--task_name", "sst2",
            "--data_dir", toy["task"], "--do_train", "--do_eval", "--output_dir", out, *GLUE_FAST, *change]
    assert run_glue.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_a_chain_refuses_dev_less_runs_foreign_output_dirs_and_changed_flags(toy, glue_chain, tmp_path, capsys):
    def refused(argv, message):
        assert run_glue.main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err

    argv = glue_chain_args(toy, glue_chain["teacher"], str(tmp_path / "a"))
    refused([a for a in argv if a != "--do_eval"], "pass --do_train and --do_eval")
    no_teacher = argv[:argv.index("--teacher_model")] + argv[argv.index("--teacher_model") + 2:]
    refused(no_teacher, "pass --teacher_model")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    refused(glue_chain_args(toy, glue_chain["teacher"], foreign), "holds no TA chain")
    assert (foreign / "notes.txt").read_text() == "keep me" and len(os.listdir(foreign)) == 1
    # the finished chain, rerun with another student learning rate: refused, nothing touched
    out = glue_chain["out"]
    mtimes = {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in ("takd_summary.json", "takd_chain.json")}
    changed = glue_chain_args(toy, glue_chain["teacher"], out)
    changed[changed.index("--learning_rate") + 1] = "5e-3"
    refused(changed, "other flags: --learning_rate")
    assert mtimes == {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in mtimes}


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A toy corpus, a BPE tokenizer and a 4-layer GPT-2 teacher."""
    root = tmp_path_factory.mktemp("takd_lm")
    corpus, bpe = toy_lm_corpus(str(root))
    teacher = build_gpt2(str(root / "gpt2"), bpe, layers=4, hidden=32, heads=2, max_positions=64, seed=1)
    return {"corpus": corpus, "teacher": teacher, "cache": str(root / "cache")}


def test_causal_lm_kd_chain_selects_on_perplexity_and_cuts_each_student_from_its_teacher(lm, tmp_path):
    out = str(tmp_path / "chain")
    code = train_lm_distill.main([str(a) for a in [
        "--teacher_name_or_path", lm["teacher"], "--student_layers", "0", "--ta_models", "3,2",
        "--kd_loss", "reverse_kl", "--kd_ratio", 0.5, "--train_file", lm["corpus"], "--output_dir", out,
        "--max_seq_length", 32, "--max_steps", 4, "--eval_steps", 2, "--per_device_train_batch_size", 4,
        "--per_device_eval_batch_size", 8, "--validation_split_percentage", 20, "--data_cache_dir", lm["cache"],
        "--learning_rate", 1e-3, "--disable_tqdm"]])
    assert code == 0
    summary = read_json(os.path.join(out, "takd_summary.json"))
    assert summary["metric"] == "perplexity" and summary["greater_is_better"] is False
    rows = summary["stages"]
    assert [r["num_layers"] for r in rows] == [4, 3, 2, 1]
    for k, row in enumerate(rows[1:], start=1):
        stage_dir = os.path.join(out, STAGES[k - 1])
        record = read_json(os.path.join(stage_dir, "takd_stage.json"))
        assert record["teacher"] == (lm["teacher"] if k == 1 else os.path.join(out, STAGES[k - 2]))
        results = read_json(os.path.join(stage_dir, "eval_results.json"))
        assert row["dev_metric"] == results["eval_perplexity"]
        teacher_results = read_json(os.path.join(stage_dir, "teacher_eval_results.json"))
        assert teacher_results["teacher_eval_perplexity"] == rows[k - 1]["dev_metric"]  # its teacher, the row above
        assert read_json(os.path.join(stage_dir, "trainer_state.json"))["global_step"] == 4
    # assistants copy evenly spaced layers of the previous model; the student is --student_layers 0 of its teacher
    assert "--student_layers 0,2,3" in " ".join(read_json(os.path.join(out, STAGES[0], "takd_stage.json"))["argv"])
    assert "--student_layers 0,2" in " ".join(read_json(os.path.join(out, STAGES[1], "takd_stage.json"))["argv"])


def test_lm_chain_refuses_a_fixed_seqkd_file(lm, tmp_path, capsys):
    code = train_lm_distill.main(["--teacher_name_or_path", lm["teacher"], "--student_layers", "0", "--ta_models",
                                  "2", "--method", "seqkd", "--seqkd_file", str(tmp_path / "r.jsonl"), "--train_file",
                                  lm["corpus"], "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "--seqkd_file with --ta_models" in err[-1]
    assert not (tmp_path / "out").exists()


def test_json_argument_file_runs_a_chain(toy, glue_teacher, tmp_path):
    out = tmp_path / "chain"
    args = {"model_name_or_path": glue_teacher, "student_layers": "0", "teacher_name_or_path": glue_teacher,
            "ta_models": "2", "task_name": "sst2", "data_dir": toy["task"], "do_train": True, "do_eval": True,
            "max_steps": 2, "output_dir": str(out), "disable_tqdm": True, "report_to": "none",
            "max_seq_length": 48}
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args))
    glue_ok(path)
    assert [r["num_layers"] for r in read_json(out / "takd_summary.json")["stages"]] == [4, 2, 1]


def test_a_finished_chain_reruns_nothing_and_overwrite_starts_it_over(toy, glue_teacher, tmp_path, monkeypatch):
    out = str(tmp_path / "chain")
    argv = ["--model_name_or_path", glue_teacher, "--student_layers", "0", "--teacher_model", glue_teacher,
            "--ta_models", "2", "--task_name", "sst2", "--data_dir", toy["task"], "--do_train", "--do_eval",
            "--max_steps", 2, "--output_dir", out, *GLUE_FAST]
    glue_ok(*argv)
    ran, real_run = [], run_glue.run

    def spy(stage_argv=None):
        ran.append("--ta_models" not in stage_argv)
        return real_run(stage_argv)

    monkeypatch.setattr(run_glue, "run", spy)
    glue_ok(*argv)
    assert ran == [False]  # the chain only: both stages finished earlier
    glue_ok(*argv, "--overwrite_output_dir")
    assert ran == [False, False, True, True]


def test_a_chain_is_the_same_chain_however_its_flags_are_spelled(toy, glue_teacher, tmp_path, monkeypatch):
    """Its record is the flags that define it (distill/run_dir.py), as for a single run: another spelling
    of a number, an alias, a relative path or a flag that does not define a run still resume it."""
    out = str(tmp_path / "chain")
    argv = ["--model_name_or_path", glue_teacher, "--student_layers", "0", "--teacher_model", glue_teacher,
            "--ta_models", "2", "--task_name", "sst2", "--data_dir", toy["task"], "--do_train", "--do_eval",
            "--max_steps", 2, "--learning_rate", "3e-3", "--output_dir", out, *GLUE_FAST]
    glue_ok(*argv)
    ran, real_run = [], run_glue.run
    monkeypatch.setattr(run_glue, "run", lambda a=None: ran.append(a) or real_run(a))
    again = [str(a) for a in argv]
    again[again.index("--learning_rate") + 1] = "0.003"
    again[again.index("--data_dir") + 1] = os.path.relpath(toy["task"])
    again[again.index("--per_device_train_batch_size")] = "--per_gpu_train_batch_size"
    glue_ok(*again, "--per_device_eval_batch_size", "4")
    assert len(ran) == 1  # the chain only: both stages finished earlier


def test_a_chain_refused_for_bad_input_under_overwrite_keeps_the_earlier_chain(toy, glue_teacher, tmp_path, capsys):
    out = tmp_path / "chain"
    argv = ["--model_name_or_path", glue_teacher, "--student_layers", "0", "--teacher_model", glue_teacher,
            "--ta_models", "2", "--task_name", "sst2", "--data_dir", toy["task"], "--do_train", "--do_eval",
            "--max_steps", 2, "--output_dir", out, *GLUE_FAST]
    glue_ok(*argv)
    before = snapshot(out)
    bad = tmp_path / "bad_task"
    bad.mkdir()
    (bad / "train.tsv").write_bytes(b"sentence\tlabel\ncaf\xe9 au lait\t1\n")  # Latin-1
    argv[argv.index("--data_dir") + 1] = bad
    assert run_glue.main([str(a) for a in [*argv, "--overwrite_output_dir"]]) == 2
    assert "not UTF-8" in capsys.readouterr().err.strip().splitlines()[-1]
    assert snapshot(out) == before


def test_a_prokt_chain_passes_on_each_student_and_reports_the_teachers_it_trained(toy, glue_teacher, tmp_path,
                                                                                   capsys):
    out = str(tmp_path / "chain")
    glue_ok("--model_name_or_path", glue_teacher, "--student_layers", "0", "--teacher_model", glue_teacher,
            "--ta_models", "2", "--train_teacher", "--task_name", "sst2", "--data_dir", toy["task"], "--do_train",
            "--do_eval", "--max_steps", 2, "--output_dir", out, *GLUE_FAST)
    assert "its teacher after" in capsys.readouterr().out
    rows = read_json(os.path.join(out, "takd_summary.json"))["stages"]
    assert rows[0]["dev_metric"] is None  # ProKT changed it before stage 1 could score the one it started from
    for row in rows[1:]:
        scored = read_json(os.path.join(row["path"], "teacher_eval_results.json"))["teacher_eval_accuracy"]
        assert row["trained_teacher_dev_metric"] == scored
    # stage 2 learns from stage 1's student (its teacher/ dir holds the teacher stage 1 trained)
    stage2 = read_json(os.path.join(out, "stage_2_student", "takd_stage.json"))
    assert stage2["teacher"] == os.path.join(out, "stage_1_2layers")
    assert os.path.isdir(os.path.join(out, "stage_1_2layers", "teacher"))


def test_test_predictions_do_not_change_any_stage_s_selection(toy, glue_chain, tmp_path):
    out = str(tmp_path / "chain")
    glue_ok(*glue_chain_args(toy, glue_chain["teacher"], out, "--do_predict"))
    for stage in STAGES:
        assert os.path.isfile(os.path.join(out, stage, "SST-2.tsv"))
    with_test = read_json(os.path.join(out, "takd_summary.json"))["stages"]
    without = read_json(os.path.join(glue_chain["out"], "takd_summary.json"))["stages"]
    assert [r["weights_sha256"] for r in with_test] == [r["weights_sha256"] for r in without]


def test_the_stages_of_a_distilbert_pipeline_command_keep_its_mode(tmp_path):
    """A chain typed as the DistilBERT pipeline's command (--dump_path): its stages stay in that mode."""
    from lm.args import translate_original_flags
    from lm.pipeline import PIPELINE_SPELLING, is_pipeline_command
    from takd.chain import Stage
    argv = ["--student_name", "s", "--teacher_name", "t", "--mlm", "--alpha_mlm", "2.0", "--dump_path",
            str(tmp_path / "dump"), "--data_file", "dump.txt", "--ta_models", "2", "--force"]
    parsed = parse_command_line(train_lm_distill.FLAGS, translate_original_flags(argv))
    stage_args = stage_argv(parsed, train_lm_distill.CHAIN, Stage(2, "student", None, str(tmp_path / "dump" / "s")),
                            "teacher_dir", PIPELINE_SPELLING)
    assert is_pipeline_command(stage_args) and "--output_dir" not in stage_args and "--ta_models" not in stage_args
    assert stage_args[stage_args.index("--dump_path") + 1] == str(tmp_path / "dump" / "s")
