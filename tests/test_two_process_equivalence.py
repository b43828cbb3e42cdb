"""Every entry script under `torchrun` and under `accelerate launch` with 2 CPU processes (gloo) ends
where the 1-process run with the same global batch ends: the same student, the same logged losses, the
same dev metrics and the same predictions, every example once and in file order.

Dropout is off in every model: two processes draw their dropout masks from two RNG streams, one
process from one, so with dropout the runs would be different (equally valid) samples."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, free_port, no_gradient, toy_lm_corpus
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
NO_DROPOUT = {"bert": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
              "gpt2": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}}


def launcher(kind: str) -> list[str]:
    """2 CPU processes. accelerate's `--cpu` starts ONE process (more need MPI): its `--multi_gpu`
    launcher (torch elastic) is the one that starts several, and on a machine without CUDA our
    accelerator then runs them on the CPU with gloo."""
    port = str(free_port())
    if kind == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--main_process_port", port, "--mixed_precision", "no", "--dynamo_backend", "no"]


def save_without_dropout(model_cls, src: str, dst, kind: str) -> str:
    from transformers import AutoTokenizer
    model_cls.from_pretrained(src, **NO_DROPOUT[kind]).save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return str(dst)


@pytest.fixture(scope="module")
def cases(toy, tmp_path_factory):
    """script -> (its flags apart from the batch size and output dir, the files to compare)."""
    from test_imdb import write_toy_imdb
    from toys import build_gpt2, toy_squad
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForQuestionAnswering,
        BertForSequenceClassification,
        GPT2LMHeadModel,
    )
    root = tmp_path_factory.mktemp("two_proc")
    cls = {name: save_without_dropout(BertForSequenceClassification, toy[name], root / name, "bert")
           for name in ("student", "teacher")}
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    qa = {}
    for name, layers in (("qa_teacher", 2), ("qa_student", 1)):
        torch.manual_seed(layers)
        BertForQuestionAnswering(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=layers,
                                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                            **NO_DROPOUT["bert"])).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        qa[name] = str(root / name)
    for name, seed, n in (("train", 0, 12), ("dev", 1, 4)):
        (root / f"squad_{name}.json").write_text(json.dumps(toy_squad(n_articles=n, clauses=6, seed=seed)))
    corpus, bpe = toy_lm_corpus(str(root), n_docs=80)
    gpt2 = build_gpt2(str(root / "gpt2_dropout"), bpe, layers=2, hidden=32, heads=2, max_positions=64, seed=1)
    gpt2 = save_without_dropout(GPT2LMHeadModel, gpt2, root / "gpt2", "gpt2")
    common = ["--do_train", "--do_eval", "--max_steps", "3", "--learning_rate", "1e-3", "--logging_steps", "1",
              "--per_device_eval_batch_size", "5", "--report_to", "none", "--disable_tqdm"]
    return {
        "glue": ("run_glue.py", [
            "--model_name_or_path", cls["student"], "--teacher_model", cls["teacher"], "--task_name", "sst2",
            "--data_dir", toy["task"], "--do_predict", "--alpha_kd", "0.5", "--temperature", "2", "--eval_steps", "2",
            *common],  # an evaluation mid-training too (step 2 of 3), after which both processes train on in step
            ["eval_results.json", "SST-2.tsv"]),
        "squad": ("run_squad_w_distillation.py", [
            "--model_name_or_path", qa["qa_student"], "--teacher_name_or_path", qa["qa_teacher"], "--train_file",
            root / "squad_train.json", "--predict_file", root / "squad_dev.json", "--max_seq_length", "48",
            "--doc_stride", "16", "--max_query_length", "12", "--alpha_ce", "0.5", "--alpha_squad", "0.5", *common],
            ["eval_results.json", "predictions.json"]),
        "imdb": ("run_imdb_w_distillation.py", [
            "--model_name_or_path", cls["student"], "--teacher_name_or_path", cls["teacher"], "--data_file",
            write_toy_imdb(root / "imdb.csv.gz", n_train=80, n_test=30), "--max_seq_length", "32", "--do_predict",
            "--alpha_ce", "0.5", "--alpha_imdb", "0.5", *common], ["eval_results.json", "test_results.json"]),
        "lm": ("train_lm_distill.py", [
            "--teacher_name_or_path", gpt2, "--student_layers", "1", "--train_file", corpus, "--max_seq_length",
            "32", "--validation_split_percentage", "20", "--data_cache_dir", root / "lm_cache", "--kd_ratio", "0.5",
            "--kd_loss", "reverse_kl", *common], ["eval_results.json"]),
    }


def run(cmd: list, out) -> None:
    proc = subprocess.run([str(a) for a in cmd] + ["--output_dir", str(out)], cwd=REPO_ROOT, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "effective batch 16 = " in proc.stderr  # 1 x 16 or 2 x 8


_ONE_PROCESS: dict[str, str] = {}


def one_process_run(launch, script: str, flags: list, tmp_path_factory) -> str:
    """The 1-process reference with a batch of 16, run once per script (a forked process: see launch)."""
    if script not in _ONE_PROCESS:
        out = tmp_path_factory.mktemp(f"one_{script}")
        run_one(launch, [script, *flags, "--per_device_train_batch_size", "16"], out)
        _ONE_PROCESS[script] = str(out)
    return _ONE_PROCESS[script]


def run_one(launch, argv: list, out) -> None:
    code, log = launch.run([*argv, "--output_dir", out])
    assert code == 0, log[-3000:]
    assert "effective batch 16 = " in log


def approx_equal_json(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            if k not in ("train_runtime", "train_steps_per_second"):
                approx_equal_json(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            approx_equal_json(x, y)
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-6)
    else:
        assert a == b


@pytest.mark.parametrize("task", ["squad", "glue"])
def test_these_parameters_get_no_gradient(cases, task):
    """In float64, the task loss plus KD (span CE and KD for QA, CE and KD for classification) reaches
    every parameter of the student except those conftest.no_gradient names."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification
    _, flags, _ = cases[task]
    auto = AutoModelForQuestionAnswering if task == "squad" else AutoModelForSequenceClassification
    teacher_flag = "--teacher_name_or_path" if task == "squad" else "--teacher_model"
    student = auto.from_pretrained(flags[flags.index("--model_name_or_path") + 1]).double()
    teacher = auto.from_pretrained(flags[flags.index(teacher_flag) + 1]).double()
    torch.manual_seed(0)
    ids = torch.randint(5, student.config.vocab_size, (4, 12))
    mask = torch.ones_like(ids)
    mask[:2, 9:] = 0  # padded rows too
    s_out, t_out = student(input_ids=ids, attention_mask=mask), teacher(input_ids=ids, attention_mask=mask)
    if task == "squad":  # positions masked out of the span softmax, as squad/objective.py does
        pairs = [(o.masked_fill(mask == 0, -1e4), t.masked_fill(mask == 0, -1e4), gold) for o, t, gold in
                 ((s_out.start_logits, t_out.start_logits, 2), (s_out.end_logits, t_out.end_logits, 5))]
    else:
        pairs = [(s_out.logits, t_out.logits, 1)]
    loss = 0.0
    for s, t, gold in pairs:
        loss = loss + torch.nn.functional.cross_entropy(s, torch.full((4,), gold))
        loss = loss + torch.nn.functional.kl_div(s.log_softmax(-1), t.detach().log_softmax(-1), log_target=True,
                                                 reduction="batchmean")
    loss.backward()
    grads = {n: p.grad.abs().max().item() for n, p in student.named_parameters() if p.grad is not None}
    scale = max(grads.values())
    layers = student.config.num_hidden_layers if task == "squad" else None
    assert {n for n, g in grads.items() if g <= 1e-12 * scale} == {n for n in grads if no_gradient(n, layers)}


def assert_same_result(one: str, two: str, files: list[str], task: str = "other") -> None:
    """The same weights (but those with an exact gradient of zero: conftest.no_gradient), logs, metrics and
    predictions."""
    a, b = load_file(os.path.join(one, "model.safetensors")), load_file(os.path.join(two, "model.safetensors"))
    for key in (k for k in a if not no_gradient(k, qa_layers=1 if task == "squad" else None)):
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=2e-5, msg=key)
    logs = [json.load(open(os.path.join(d, "trainer_state.json")))["log_history"] for d in (one, two)]
    approx_equal_json(*logs)
    for name in files:  # dev metrics and every prediction, in file order
        if name.endswith(".json"):
            approx_equal_json(json.load(open(os.path.join(one, name))), json.load(open(os.path.join(two, name))))
        else:
            assert open(os.path.join(one, name)).read() == open(os.path.join(two, name)).read()


@pytest.mark.parametrize("kind", ["torchrun", "accelerate"])
@pytest.mark.parametrize("script_name", ["glue", "squad", "imdb", "lm"])
def test_two_processes_end_where_one_process_ends(cases, script_name, kind, launch, tmp_path, tmp_path_factory):
    script, flags, files = cases[script_name]
    one = one_process_run(launch, script, flags, tmp_path_factory)
    run([*launcher(kind), os.path.join(REPO_ROOT, script), *flags, "--per_device_train_batch_size", "8"],
        tmp_path / "two")
    assert_same_result(one, str(tmp_path / "two"), files, script_name)


def test_two_processes_build_the_teacher_cache_and_train_the_same_student(cases, launch, tmp_path, tmp_path_factory):
    """The cache built by 2 processes (each its share of the training set) trains the 1-process
    live-teacher student, and a 1-process run reads the same cache."""
    script, flags, files = cases["glue"]
    one = one_process_run(launch, script, flags, tmp_path_factory)
    cache = ["--cache_teacher_outputs", "--teacher_cache_dir", tmp_path / "cache"]
    run([*launcher("accelerate"), os.path.join(REPO_ROOT, script), *flags, *cache, "--per_device_train_batch_size",
         "8"], tmp_path / "two")
    (entry,) = os.listdir(tmp_path / "cache")
    assert sorted(os.listdir(tmp_path / "cache" / entry)) == ["meta.json", "part-0.safetensors",
                                                              "part-1.safetensors"]
    assert_same_result(one, str(tmp_path / "two"), files)
    run_one(launch, [script, *flags, *cache, "--per_device_train_batch_size", "16"], tmp_path / "one_cached")
    assert os.listdir(tmp_path / "cache") == [entry]
    assert_same_result(one, str(tmp_path / "one_cached"), files)


def test_a_teacher_assistant_chain_under_two_processes(toy, launch, tmp_path):
    """TAKD: every stage of a 4 -> 2 -> 1 layer chain under torchrun equals the 1-process chain (the
    stage loop synchronises the processes and only the main one writes the chain's files)."""
    from transformers import BertForSequenceClassification
    teacher = save_without_dropout(BertForSequenceClassification, toy["teacher4"], tmp_path / "teacher4", "bert")
    student = save_without_dropout(BertForSequenceClassification, toy["student"], tmp_path / "student", "bert")
    flags = ["--model_name_or_path", student, "--teacher_model", teacher, "--ta_models", "2", "--task_name", "sst2",
             "--data_dir", toy["task"], "--do_train", "--do_eval", "--max_steps", "2", "--learning_rate", "1e-3",
             "--logging_steps", "1", "--report_to", "none", "--disable_tqdm"]
    script = os.path.join(REPO_ROOT, "run_glue.py")
    run_one(launch, ["run_glue.py", *flags, "--per_device_train_batch_size", "16"], tmp_path / "one")
    run([*launcher("torchrun"), script, *flags, "--per_device_train_batch_size", "8"], tmp_path / "two")
    stages = sorted(d for d in os.listdir(tmp_path / "one") if d.startswith("stage_"))
    assert len(stages) == 2 and stages == sorted(d for d in os.listdir(tmp_path / "two") if d.startswith("stage_"))
    for stage in stages:
        assert_same_result(str(tmp_path / "one" / stage), str(tmp_path / "two" / stage), ["eval_results.json"])
    summaries = [json.load(open(tmp_path / d / "takd_summary.json")) for d in ("one", "two")]
    for a, b in zip(summaries[0]["stages"], summaries[1]["stages"]):
        assert a["num_layers"] == b["num_layers"] and a["dev_metric"] == pytest.approx(b["dev_metric"])
