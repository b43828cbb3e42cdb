"""train_lm_distill.py --method minillm / seqkd, and Rouge-L evaluation, end to end on tiny models."""
from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import assert_same_run, crash_at_step
from safetensors.torch import load_file
from test_train_lm_distill import read_json, run_error, run_ok
from toys import build_gpt2

import sequence_kd.rollouts
import sequence_kd.seqkd
import train_lm_distill
from distill.toy import build_bpe_tokenizer, toy_sentence
from lm.data import read_records


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """Prompt/response jsonl (and the same rows in Dolly's format), a plain corpus, a BPE tokenizer, a
    2-layer GPT-2 teacher and a 1-layer student."""
    root = tmp_path_factory.mktemp("gen")
    rng = random.Random(0)
    rows = [{"prompt": toy_sentence(rng)[0] + " .\n", "response": toy_sentence(rng)[0] + " ."} for _ in range(40)]
    with open(root / "pr.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(root / "dolly.jsonl", "w") as f:
        f.writelines(json.dumps({"instruction": r["prompt"], "context": "c" if i % 2 else "",
                                 "response": r["response"]}) + "\n" for i, r in enumerate(rows))
    docs = [r["prompt"] + r["response"] for r in rows]
    (root / "corpus.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    tok = build_bpe_tokenizer(str(root / "bpe"), docs, vocab_size=260)
    teacher = build_gpt2(str(root / "teacher"), tok, layers=2, hidden=32, heads=2, max_positions=64, seed=1)
    student = build_gpt2(str(root / "student"), tok, layers=1, hidden=32, heads=2, max_positions=64, seed=2)
    return {"root": root, "pr": str(root / "pr.jsonl"), "dolly": str(root / "dolly.jsonl"),
            "corpus": str(root / "corpus.txt"), "teacher": teacher, "student": student, "cache": str(root / "cache")}


def common(gen, out, *extra):
    return ["--model_name_or_path", gen["student"], "--train_file", gen["pr"], "--output_dir", out,
            "--validation_split_percentage", 10, "--max_seq_length", 48, "--max_prompt_length", 24,
            "--max_new_tokens", 10, "--eval_seeds", "1,2", "--per_device_train_batch_size", 4,
            "--per_device_eval_batch_size", 8, "--data_cache_dir", gen["cache"], "--disable_tqdm",
            "--learning_rate", 1e-3, "--logging_steps", 1, *extra]


def minillm_args(gen, out, *extra):
    return common(gen, out, "--method", "minillm", "--teacher_name_or_path", gen["teacher"], "--lm_train_file",
                  gen["corpus"], "--num_rollouts", 8, "--chunk_size", 4, "--ppo_epochs", 2, "--max_steps", 6, *extra)


def test_minillm_end_to_end(gen, tmp_path):
    out = tmp_path / "minillm"
    run_ok(*minillm_args(gen, out))
    results = read_json(out / "eval_results.json")
    assert {"eval_rougeL", "eval_exact_match", "eval_rougeL_std"} <= set(results)
    assert "teacher_eval_rougeL" in read_json(out / "teacher_eval_results.json")
    assert results["eval_samples"] == 4  # the last 10 % of 40 prompts
    generations = read_jsonl(out / "eval_generations.jsonl")
    assert len(generations) == 2 * 4 and {g["seed"] for g in generations} == {1, 2}
    log = [e for e in read_json(out / "trainer_state.json")["log_history"] if "loss/total" in e]
    assert len(log) == 6  # 8 rollouts / batch 4 × 2 PPO passes = 4 steps per collection; 2 collections
    first = log[0]
    assert first["loss/total"] == pytest.approx(
        first["loss/pg"] + first["loss/reg"] + 0.5 * first["loss/lm"] + 0.5 * first["loss/kd"], rel=1e-4)
    assert first["loss/reg"] > 0 and first["loss/kd"] > 0


def test_minillm_resumed_inside_a_collection_equals_uninterrupted(gen, tmp_path, monkeypatch):
    argv = minillm_args(gen, None, "--save_steps", 1, "--report_to", "none")
    full = [str(a) if a is not None else str(tmp_path / "full") for a in argv]
    run_ok(*full)
    resumed = [str(a) if a is not None else str(tmp_path / "resumed") for a in argv]
    # step 6 is the 2nd step of collection 1: the resumed run must reuse that collection's rollouts
    crash_at_step(monkeypatch, train_lm_distill.main, resumed, step=6)
    calls = []
    real_collect = sequence_kd.rollouts.RolloutSource.collect
    monkeypatch.setattr(sequence_kd.rollouts.RolloutSource, "collect",
                        lambda self, c, t: calls.append(c) or real_collect(self, c, t))
    run_ok(*resumed)
    assert calls == []  # nothing re-sampled: the buffer came from checkpoint-5
    assert_same_run(tmp_path / "full", tmp_path / "resumed")


def test_seqkd_writes_reuses_and_trains_on_teacher_responses(gen, tmp_path, monkeypatch):
    store = tmp_path / "seqkd.jsonl"
    argv = common(gen, tmp_path / "a", "--method", "seqkd", "--teacher_name_or_path", gen["teacher"],
                  "--seqkd_file", store, "--max_steps", 3, "--report_to", "none")
    run_ok(*argv)
    rows = read_jsonl(store)
    train_prompts = [r["prompt"] for r in read_records(gen["pr"])][:36]
    assert [r["prompt"] for r in rows] == train_prompts  # every training prompt, none held out
    assert len({r["seqkd_key"] for r in rows}) == 1 and all(isinstance(r["response"], str) for r in rows)
    assert read_records(str(store))[0]["prompt"] == train_prompts[0]  # a plain prompt/response file
    log = read_json(tmp_path / "a" / "trainer_state.json")["log_history"]
    assert "loss/kd" not in log[0]  # pure SeqKD: the teacher only wrote the data

    def no_sampling(*a, **k):
        raise AssertionError("the stored responses should have been reused")
    monkeypatch.setattr(sequence_kd.seqkd, "sample", no_sampling)
    run_ok(*common(gen, tmp_path / "b", "--method", "seqkd", "--teacher_name_or_path", gen["teacher"],
                   "--seqkd_file", store, "--max_steps", 3, "--kd_ratio", 0.5, "--report_to", "none"))
    assert "loss/kd" in read_json(tmp_path / "b" / "trainer_state.json")["log_history"][0]  # SeqKD + token KD
    # the same file asked for with other sampling settings is refused, not silently reused
    monkeypatch.undo()


def test_seqkd_file_from_other_settings_is_refused(gen, tmp_path, capsys):
    store = tmp_path / "seqkd.jsonl"
    base = common(gen, tmp_path / "a", "--method", "seqkd", "--teacher_name_or_path", gen["teacher"],
                  "--seqkd_file", store, "--max_steps", 1, "--report_to", "none")
    run_ok(*base)
    before = store.read_bytes()
    err = run_error(capsys, *common(gen, tmp_path / "b", "--method", "seqkd", "--teacher_name_or_path",
                                    gen["teacher"], "--seqkd_file", store, "--max_steps", 1, "--top_p", 0.5))
    assert "--seqkd_file" in err and "another teacher" in err
    assert store.read_bytes() == before


def test_sft_selected_on_rouge_l_and_dolly_rows(gen, tmp_path):
    out = tmp_path / "sft"
    run_ok(*common(gen, out, "--eval_metric", "rougeL", "--max_steps", 4, "--eval_steps", 2, "--eval_strategy",
                   "steps", "--report_to", "none"))
    state = read_json(out / "trainer_state.json")
    assert [e["step"] for e in state["log_history"] if "eval_rougeL" in e] == [2, 4]
    assert state["best_step"] in (2, 4)
    records = read_records(gen["dolly"])
    assert records[0]["prompt"].startswith("Below is an instruction") and "### Input:\nc" in records[1]["prompt"]
    assert [r["response"] for r in records] == [r["response"] for r in read_records(gen["pr"])]


@pytest.mark.parametrize("extra,expected", [
    (["--method", "minillm"], "needs a teacher"),
    (["--method", "distill"], "--method 'distill' is unknown"),
    (["--method", "minillm", "--teacher_name_or_path", "T", "--mlm"], "need a causal LM"),
    (["--method", "minillm", "--teacher_name_or_path", "T", "--num_rollouts", 6], "multiple of the global batch"),
    (["--method", "minillm", "--teacher_name_or_path", "T", "--max_prompt_length", 60], "exceeds the model's 64"),
    (["--method", "minillm", "--teacher_name_or_path", "T", "--train_file", "CORPUS"], "holds plain text"),
    (["--eval_seeds", "a,b", "--eval_metric", "rougeL"], "--eval_seeds"),
    (["--teacher_mix_alpha", "1.5", "--method", "minillm", "--teacher_name_or_path", "T"], "--teacher_mix_alpha"),
])
def test_bad_generation_flags_are_refused_in_one_line(gen, tmp_path, capsys, extra, expected):
    extra = [gen["teacher"] if a == "T" else gen["corpus"] if a == "CORPUS" else a for a in extra]
    out = tmp_path / "out"
    err = run_error(capsys, *common(gen, out, "--max_steps", 1, *extra))
    assert expected in err, err
    assert not out.exists() or not any(out.iterdir())


def test_the_evaluation_job_s_settings_run_as_written(gen, tmp_path):
    """scripts/slurm/experiments/minillm_eval_dolly.sh (MiniLLM's eval_main_dolly): its flags, with a tiny
    model, Dolly-format rows and a budget that fits the model's 64 positions."""
    import os
    import subprocess

    from conftest import REPO_ROOT
    settings = os.path.join(REPO_ROOT, "scripts", "slurm", "experiments", "minillm_eval_dolly.sh")
    # The untrained student writes byte noise, which shares no word with a sentence: references that also
    # hold every letter and digit as a word give each response a Rouge-L of its own, so the score is checked
    # on values that are not all 0.
    dolly = tmp_path / "dolly.jsonl"
    words = " ".join("abcdefghijklmnopqrstuvwxyz0123456789")
    dolly.write_text("".join(json.dumps({**row, "response": f"{row['response']} {words}"}) + "\n"
                             for row in read_jsonl(gen["dolly"])), encoding="utf-8")
    env = {**os.environ, "MODEL": gen["student"], "DOLLY_TEST": str(dolly), "OUT": str(tmp_path)}
    args = subprocess.run(["bash", "-c", f'source "{settings}"; printf "%s\\n" "${{ARGS[@]}}"'], env=env,
                          capture_output=True, text=True, check=True).stdout.splitlines()
    run_ok(*args, "--max_prompt_length", 24, "--max_new_tokens", 10, "--max_seq_length", 48, "--disable_tqdm")
    out = tmp_path / "eval_dolly" / "student"
    results = read_json(out / "eval_results.json")
    generations = read_jsonl(out / "eval_generations.jsonl")
    assert results["eval_samples"] == 40 and len(generations) == 5 * 40
    assert {row["seed"] for row in generations} == {10, 20, 30, 40, 50}  # the paper's five sampling seeds
    # Rouge-L as the rouge-score package computes it from the written responses (stemmed F, best reference,
    # ×100), averaged over each seed's prompts, then over seeds
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    per_seed = {}
    for row in generations:
        per_seed.setdefault(row["seed"], []).append(
            100 * max(scorer.score(ref, row["response"])["rougeL"].fmeasure for ref in row["references"]))
    assert len({round(x, 6) for v in per_seed.values() for x in v}) > 10  # the check below is not 0 == 0
    assert results["eval_rougeL"] == pytest.approx(sum(sum(v) / len(v) for v in per_seed.values()) / len(per_seed))
    assert (out / "eval_run_args.json").exists() and not (out / "model.safetensors").exists()


def no_validation(argv):
    """`argv` with --validation_split_percentage 0 (and no --validation_file)."""
    argv = [str(a) for a in argv]
    i = argv.index("--validation_split_percentage")
    argv[i + 1] = "0"
    return argv


def seqkd_args(gen, out, store, *extra):
    return common(gen, out, "--method", "seqkd", "--teacher_name_or_path", gen["teacher"], "--seqkd_file", store,
                  "--max_steps", 1, "--report_to", "none", *extra)


@pytest.mark.parametrize("method", ["minillm", "seqkd"])
def test_training_alone_needs_no_held_out_prompts(gen, tmp_path, method):
    out = tmp_path / "out"
    argv = (minillm_args(gen, out, "--max_steps", 1, "--report_to", "none") if method == "minillm"
            else seqkd_args(gen, out, tmp_path / "seqkd.jsonl"))
    run_ok(*no_validation(argv), "--do_train")
    assert (out / "model.safetensors").exists() and not (out / "eval_results.json").exists()
    if method == "seqkd":  # every training prompt answered, none held out
        assert len(read_jsonl(tmp_path / "seqkd.jsonl")) == len(read_records(gen["pr"]))


@pytest.mark.parametrize("method", ["minillm", "seqkd"])
def test_evaluation_with_nothing_held_out_is_refused_up_front(gen, tmp_path, capsys, method, monkeypatch):
    out = tmp_path / "out"
    store = tmp_path / "seqkd.jsonl"
    argv = (minillm_args(gen, out, "--max_steps", 1, "--report_to", "none") if method == "minillm"
            else seqkd_args(gen, out, store))

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the refusal")
    monkeypatch.setattr(train_lm_distill, "load_teacher", no_model)
    err = run_error(capsys, *no_validation(argv), "--do_train", "--do_eval")
    assert "--do_eval" in err and "--validation_file" in err, err
    assert not out.exists() or not any(out.iterdir())
    assert not store.exists()


def test_minillm_with_fused_output_layers_trains_as_with_the_models_own_logits(gen, tmp_path, monkeypatch):
    """The default (policy, single-step and text terms from final hidden states through the output layers)
    against --no_fused_output_layer: the rollouts are sampled from the same weights with the same seeds, so
    both runs see the same tokens; logged terms agree to float32 summation order (1e-4 relative on 6-digit
    logs), the weights after 6 PPO steps to 1e-5."""
    import sequence_kd.minillm as minillm
    calls = []
    real = minillm.fused_token_logprobs
    monkeypatch.setattr(minillm, "fused_token_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_ok(*minillm_args(gen, tmp_path / "fused", "--do_train", "--report_to", "none"))
    assert len(calls) == 6  # every optimizer step's policy term through the fused path
    run_ok(*minillm_args(gen, tmp_path / "logits", "--do_train", "--report_to", "none", "--no_fused_output_layer"))
    assert len(calls) == 6
    logs = [read_json(tmp_path / d / "trainer_state.json")["log_history"] for d in ("fused", "logits")]
    steps = [[e for e in log if "loss/total" in e] for log in logs]
    assert len(steps[0]) == len(steps[1]) == 6
    for a, b in zip(*steps):
        for key in ("loss/total", "loss/pg", "loss/reg", "loss/lm", "loss/kd"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), key
    fused, plain = (load_file(tmp_path / d / "model.safetensors") for d in ("fused", "logits"))
    assert fused.keys() == plain.keys()
    for name in fused:
        assert torch.allclose(fused[name], plain[name], rtol=1e-4, atol=1e-5), name
