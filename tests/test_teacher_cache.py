"""--cache_teacher_outputs: the same student as with the live teacher, the teacher run once over the
training set and never again (epochs, later runs), a new cache when teacher/data/tokenisation change,
the top-k rule for LM logits, and the refusals where a cache could not stand in for the teacher."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch
from conftest import no_gradient, toy_lm_corpus
from safetensors.torch import load_file

import run_glue
import run_squad_w_distillation
import train_lm_distill
from distill.teacher import Teacher
from distill.teacher_cache import CachedTeacher


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def assert_same_student(dir_a, dir_b, atol=2e-5, qa_layers=None):
    """Same weights (the cached outputs were computed in other batches: float rounding only; parameters
    whose exact gradient is zero are float noise, see conftest.no_gradient) and the same logged losses
    at every step."""
    a, b = load_file(os.path.join(dir_a, "model.safetensors")), load_file(os.path.join(dir_b, "model.safetensors"))
    for key in (k for k in a if not no_gradient(k, qa_layers)):
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=atol, msg=key)
    logs_a = read_json(os.path.join(dir_a, "trainer_state.json"))["log_history"]
    logs_b = read_json(os.path.join(dir_b, "trainer_state.json"))["log_history"]
    assert len(logs_a) == len(logs_b)
    for x, y in zip(logs_a, logs_b):
        assert x.keys() == y.keys()
        for key, value in x.items():
            assert y[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


@pytest.fixture
def teacher_calls(monkeypatch):
    """Counts live teacher forwards (the cache builds through the same method)."""
    calls = {"n": 0}
    real = Teacher.outputs

    def counting(self, batch, **kwargs):
        calls["n"] += 1
        return real(self, batch, **kwargs)

    monkeypatch.setattr(Teacher, "outputs", counting)
    return calls


def glue_args(toy, out, *extra, weights=("--alpha_kd", "0.7")):
    return [*weights, "--model_name_or_path", toy["student"], "--teacher_model", toy["teacher"], "--task_name", "sst2",
            "--data_dir", toy["task"], "--do_train", "--num_train_epochs", "2", "--per_device_train_batch_size", "8",
            "--per_device_eval_batch_size", "16", "--learning_rate", "1e-3", "--temperature",
            "2", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "--output_dir", out, *extra]


def test_glue_kd_with_the_cache_equals_the_live_teacher_and_runs_it_once(toy, tmp_path, teacher_calls):
    cache = tmp_path / "cache"
    assert run_glue.main([str(a) for a in glue_args(toy, tmp_path / "live")]) == 0
    assert teacher_calls["n"] == 2 * 12  # 96 examples / 8, two epochs: the teacher every step
    teacher_calls["n"] = 0
    cached = glue_args(toy, tmp_path / "cached", "--cache_teacher_outputs", "--teacher_cache_dir", cache)
    assert run_glue.main([str(a) for a in cached]) == 0
    assert teacher_calls["n"] == math.ceil(96 / 16)  # one pass over the training set, in eval batches of 16
    assert_same_student(tmp_path / "live", tmp_path / "cached")
    (entry,) = os.listdir(cache)
    meta = read_json(cache / entry / "meta.json")
    assert meta["examples"] == 96 and meta["per_token"] == []

    # a later run (another output dir) reads the cache: no teacher forward at all, the same student
    teacher_calls["n"] = 0
    assert run_glue.main([str(a) for a in glue_args(toy, tmp_path / "again", "--cache_teacher_outputs",
                                                    "--teacher_cache_dir", cache)]) == 0
    assert teacher_calls["n"] == 0 and os.listdir(cache) == [entry]
    assert_same_student(tmp_path / "cached", tmp_path / "again", atol=0)


def test_a_changed_teacher_data_or_tokenisation_makes_a_new_cache(toy, tmp_path, teacher_calls):
    cache = tmp_path / "cache"
    base = ["--cache_teacher_outputs", "--teacher_cache_dir", cache, "--max_steps", "1"]
    variants = [[], ["--teacher_model", toy["teacher4"]], ["--max_train_samples", "90"],
                ["--max_seq_length", "8"]]
    for i, extra in enumerate(variants):
        assert run_glue.main([str(a) for a in glue_args(toy, tmp_path / f"run{i}", *base, *extra)]) == 0
    assert len(os.listdir(cache)) == len(variants)  # each change: its own cache, never a stale one
    teacher_calls["n"] = 0
    assert run_glue.main([str(a) for a in glue_args(toy, tmp_path / "same", *base)]) == 0
    assert teacher_calls["n"] == 0 and len(os.listdir(cache)) == len(variants)


def test_an_unfinished_cache_is_never_read(toy, tmp_path, monkeypatch):
    """A kill while the cache is written leaves a `.partial-*` dir without meta.json; the next run builds
    the cache again instead of reading half of it."""
    cache = tmp_path / "cache"
    real_build = CachedTeacher._build

    def killed_after_the_parts(self, trainer, dataset):
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
        real_build(self, trainer, dataset)

    monkeypatch.setattr(CachedTeacher, "_build", killed_after_the_parts)
    args = [str(a) for a in glue_args(toy, tmp_path / "o", "--cache_teacher_outputs", "--teacher_cache_dir",
                                      cache, "--max_steps", "2")]
    with pytest.raises(KeyboardInterrupt):
        run_glue.main(args)
    monkeypatch.undo()
    assert all(".partial-" in name for name in os.listdir(cache))
    assert run_glue.main([*args, "--overwrite_output_dir"]) == 0
    assert sum(".partial-" not in name for name in os.listdir(cache)) == 1


def test_hidden_state_losses_read_the_cached_last_layer(toy, tmp_path):
    weights = ("--alpha_ce", "0.5", "--alpha_glue", "0.5", "--alpha_cos", "1.0", "--alpha_mse", "0.5")
    assert run_glue.main([str(a) for a in glue_args(toy, tmp_path / "live", "--max_steps", "4",
                                                    weights=weights)]) == 0
    assert run_glue.main([str(a) for a in glue_args(toy, tmp_path / "cached", "--max_steps", "4",
                                                    "--cache_teacher_outputs", "--teacher_cache_dir",
                                                    tmp_path / "cache", weights=weights)]) == 0
    assert_same_student(tmp_path / "live", tmp_path / "cached")
    (entry,) = os.listdir(tmp_path / "cache")
    assert read_json(tmp_path / "cache" / entry / "meta.json")["per_token"] == ["hidden_states"]


def test_squad_span_logits_are_cached_per_token(toy, tmp_path):
    from toys import toy_squad
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    torch.manual_seed(0)
    models = {}
    for name, layers in (("teacher", 2), ("student", 1)):
        model = BertForQuestionAnswering(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=layers,
                                                    num_attention_heads=2, intermediate_size=64,
                                                    max_position_embeddings=64))
        models[name] = tmp_path / name
        model.save_pretrained(models[name])
        tok.save_pretrained(models[name])
    train = tmp_path / "train.json"
    train.write_text(json.dumps(toy_squad(n_articles=20, clauses=6, seed=0)))
    common = ["--model_name_or_path", models["student"], "--teacher_name_or_path", models["teacher"], "--train_file",
              train, "--do_train", "--max_steps", "4", "--max_seq_length", "48", "--doc_stride", "16",
              "--max_query_length", "12", "--per_device_train_batch_size", "8", "--learning_rate", "3e-3",
              "--alpha_ce", "0.5", "--alpha_squad", "0.5", "--logging_steps", "1", "--report_to", "none",
              "--disable_tqdm"]
    assert run_squad_w_distillation.main([str(a) for a in [*common, "--output_dir", tmp_path / "live"]]) == 0
    assert run_squad_w_distillation.main([str(a) for a in [*common, "--output_dir", tmp_path / "cached",
                                                           "--cache_teacher_outputs", "--teacher_cache_dir",
                                                           tmp_path / "cache"]]) == 0
    assert_same_student(tmp_path / "live", tmp_path / "cached", qa_layers=1)
    (entry,) = os.listdir(tmp_path / "cache")
    assert read_json(tmp_path / "cache" / entry / "meta.json")["per_token"] == ["end_logits", "start_logits"]


# ---------------------------------------------------------------------- LM distillation and top-k
@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from toys import build_gpt2
    root = tmp_path_factory.mktemp("lm_cache")
    corpus, bpe = toy_lm_corpus(str(root))
    gpt2 = build_gpt2(str(root / "gpt2"), bpe, layers=2, hidden=32, heads=2, max_positions=64, seed=1)
    return {"root": root, "corpus": corpus, "gpt2": gpt2, "vocab": len(bpe)}


def lm_args(lm, out, *extra):
    return [str(a) for a in [
        "--teacher_name_or_path", lm["gpt2"], "--student_layers", "1", "--train_file", lm["corpus"],
        "--output_dir", out, "--max_seq_length", 32, "--max_steps", 4, "--per_device_train_batch_size", 4,
        "--validation_split_percentage", 20, "--data_cache_dir", lm["root"] / "data", "--disable_tqdm",
        "--learning_rate", 1e-3, "--kd_ratio", 0.5, "--temperature", 2.0, "--logging_steps", 1, "--report_to",
        "none", *extra]]


@pytest.mark.parametrize("kd_loss", ["forward_kl", "reverse_kl"])
def test_causal_lm_kd_with_full_or_all_token_top_k_cache_equals_the_live_teacher(lm, tmp_path, kd_loss):
    """Full logits, and top-k with k = V (the rule then drops nothing), both give the live teacher's student."""
    assert train_lm_distill.main(lm_args(lm, tmp_path / "live", "--kd_loss", kd_loss)) == 0
    for name, extra in (("full", []), ("topV", ["--teacher_cache_top_k", lm["vocab"]])):
        assert train_lm_distill.main(lm_args(lm, tmp_path / name, "--kd_loss", kd_loss, "--cache_teacher_outputs",
                                             "--teacher_cache_dir", tmp_path / "cache", *extra)) == 0
        assert_same_student(tmp_path / "live", tmp_path / name, atol=5e-5)
    assert len(os.listdir(tmp_path / "cache")) == 2  # the top-k setting is part of the key


def test_top_k_keeps_the_k_largest_probabilities_and_spreads_the_rest_evenly():
    """The rule on hand values: p^τ = softmax(t/τ) over V = 5 tokens, k = 2."""
    teacher = CachedTeacher.__new__(CachedTeacher)
    teacher.top_k, teacher.vocab_size, teacher.temperature = 2, 5, 2.0
    t = torch.tensor([[[4.0, 0.0, 2.0, -2.0, 1.0]]])  # (B=1, T=1, V=5)
    stored = teacher._storable({"logits": t})
    assert stored["logits.topk_ids"].tolist() == [[[0, 2]]]
    z = teacher._dense_logits(stored["logits.topk_logprobs"], stored["logits.topk_ids"])  # (1, 1, 5)
    p = torch.softmax(t / 2.0, -1)[0, 0]
    rest = (1 - p[0] - p[2]) / 3
    p_hat = torch.softmax(z / 2.0, -1)[0, 0]  # what the loss sees at temperature τ
    torch.testing.assert_close(p_hat, torch.stack([p[0], rest, p[2], rest, rest]))
    assert p_hat.sum().item() == pytest.approx(1.0)


def test_top_k_trains_a_student_and_its_kd_loss_moves_towards_the_full_one(lm, tmp_path):
    """With k < V the targets are an approximation: the run works, and its KD loss is close to (not
    equal to) the full-logit run's, closer for larger k."""
    losses = {}
    for name, extra in (("full", []), ("k4", ["--teacher_cache_top_k", 4]), ("k64", ["--teacher_cache_top_k", 64])):
        out = tmp_path / name
        assert train_lm_distill.main(lm_args(lm, out, "--cache_teacher_outputs", "--teacher_cache_dir",
                                             tmp_path / "cache", *extra)) == 0
        losses[name] = read_json(out / "trainer_state.json")["log_history"][0]["loss/kd"]
    assert abs(losses["k64"] - losses["full"]) < abs(losses["k4"] - losses["full"])
    assert losses["k4"] != pytest.approx(losses["full"], rel=1e-3)


def test_cache_refusals_are_one_line(toy, lm, tmp_path, capsys):
    def refused(main, argv):
        assert main([str(a) for a in argv]) == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    glue_base = ["--model_name_or_path", toy["student"], "--task_name", "sst2", "--data_dir", toy["task"],
                 "--do_train", "--output_dir", tmp_path / "o"]
    assert "no teacher" in refused(run_glue.main, [*glue_base, "--cache_teacher_outputs"])
    assert "--train_teacher" in refused(run_glue.main, [*glue_base, "--teacher_model", toy["teacher"],
                                                        "--train_teacher", "--cache_teacher_outputs"])
    assert "add it" in refused(run_glue.main, [*glue_base, "--teacher_cache_top_k", "5"])
    assert "train_lm_distill.py only" in refused(run_glue.main, [*glue_base, "--teacher_model", toy["teacher"],
                                                                 "--cache_teacher_outputs", "--teacher_cache_top_k",
                                                                 "5"])
    lm_cached = [*lm_args(lm, tmp_path / "lm"), "--cache_teacher_outputs"]
    assert "--alpha_mse" in refused(train_lm_distill.main, [*lm_cached, "--teacher_cache_top_k", "5",
                                                            "--alpha_mse", "1"])
    assert "MiniLLM" in refused(train_lm_distill.main, [
        "--method", "minillm", "--teacher_name_or_path", lm["gpt2"], "--model_name_or_path", lm["gpt2"],
        "--train_file", lm["corpus"], "--output_dir", tmp_path / "m", "--do_train", "--cache_teacher_outputs"])
    assert "masks every batch anew" in refused(train_lm_distill.main, [
        "--teacher_name_or_path", lm["gpt2"], "--mlm", "--alpha_mlm", "2.0", "--train_file", lm["corpus"],
        "--output_dir", tmp_path / "b", "--cache_teacher_outputs"])
    assert not os.path.exists(tmp_path / "o") and not os.path.exists(tmp_path / "lm")


def test_a_top_k_larger_than_the_vocabulary_is_refused_in_one_line(lm, tmp_path, capsys):
    k = lm["vocab"] + 1
    code = train_lm_distill.main(lm_args(lm, tmp_path / "out", "--cache_teacher_outputs", "--teacher_cache_dir",
                                         tmp_path / "cache", "--teacher_cache_top_k", k))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (f"error: --teacher_cache_top_k {k} is larger than the vocabulary ({k - 1} "
                                     f"tokens); give at most {k - 1} (that many keeps the teacher's distribution "
                                     "exactly)")
    assert not (tmp_path / "cache").exists()
