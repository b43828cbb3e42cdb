"""train_lm_distill.py end to end on tiny models built from configs, and the student's initialisation."""
from __future__ import annotations

import json
import os
import random

import pytest
import torch
from conftest import assert_same_run, crash_at_step, toy_lm_corpus
from safetensors.torch import load_file
from toys import build_gpt2

import train_lm_distill
from distill.toy import build_bpe_tokenizer, toy_sentence
from lm.models import bert_to_distilbert, build_student


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_ok(*argv):
    code = train_lm_distill.main([str(a) for a in argv])
    assert code == 0


def run_error(capsys, *argv) -> str:
    code = train_lm_distill.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err and err[-1].startswith("error: "), err
    return err[-1]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A toy corpus (documents of toy sentences), a BPE tokenizer, a 2-layer GPT-2 and a BERT MLM teacher."""
    from transformers import BertConfig, BertForMaskedLM
    root = tmp_path_factory.mktemp("lm")
    corpus, bpe = toy_lm_corpus(str(root))
    gpt2 = build_gpt2(str(root / "gpt2"), bpe, layers=2, hidden=32, heads=2, max_positions=64, seed=1)
    from distill.toy import build_tokenizer
    word_tok = build_tokenizer(str(root / "words"))
    torch.manual_seed(2)
    bert = BertForMaskedLM(BertConfig(vocab_size=len(word_tok), hidden_size=32, num_hidden_layers=3,
                                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    bert.save_pretrained(root / "bert")
    word_tok.save_pretrained(root / "bert")
    student_cfg = root / "distilbert.json"  # the original pipeline's config style: no model_type
    student_cfg.write_text(json.dumps({"vocab_size": len(word_tok), "dim": 32, "n_layers": 2, "n_heads": 2,
                                       "hidden_dim": 64, "max_position_embeddings": 64, "dropout": 0.1}))
    return {"root": root, "corpus": corpus, "gpt2": gpt2, "bert": str(root / "bert"),
            "distilbert_cfg": str(student_cfg), "cache": str(root / "cache")}


def causal_args(lm, out, *extra):
    return ["--train_file", lm["corpus"], "--output_dir", out, "--max_seq_length", 32, "--max_steps", 4,
            "--per_device_train_batch_size", 4, "--per_device_eval_batch_size", 8, "--validation_split_percentage",
            20, "--data_cache_dir", lm["cache"], "--disable_tqdm", "--learning_rate", 1e-3, *extra]


def test_causal_lm_teacher_then_reverse_kl_student_end_to_end(lm, tmp_path):
    run_ok(*causal_args(lm, tmp_path / "teacher", "--model_name_or_path", lm["gpt2"], "--report_to", "none"))
    teacher_dir = tmp_path / "teacher"
    assert "eval_perplexity" in read_json(teacher_dir / "eval_results.json")

    out = tmp_path / "student"
    run_ok(*causal_args(lm, out, "--teacher_name_or_path", teacher_dir, "--student_layers", "1", "--kd_loss",
                        "reverse_kl", "--kd_ratio", "0.5", "--logging_steps", 1))
    results = read_json(out / "eval_results.json")
    teacher_results = read_json(out / "teacher_eval_results.json")  # the teacher's scores: their own file
    assert not any(k.startswith("teacher_") for k in results)
    assert results["eval_tokens"] == teacher_results["teacher_eval_tokens"]  # both scored on the same tokens
    teacher_ppl = read_json(teacher_dir / "eval_results.json")["eval_perplexity"]
    assert teacher_results["teacher_eval_perplexity"] == pytest.approx(teacher_ppl, rel=1e-5)
    log = read_json(out / "trainer_state.json")["log_history"]
    assert {"loss/kd", "loss/clm", "loss/kd_weighted"} <= set(log[0])
    assert log[0]["loss/total"] == pytest.approx(0.5 * log[0]["loss/kd"] + 0.5 * log[0]["loss/clm"], rel=1e-4)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = set()
    for name in os.listdir(out / "runs"):
        events = EventAccumulator(str(out / "runs"))
        events.Reload()
        tags |= set(events.Tags()["scalars"])
    assert {"eval_perplexity", "loss/kd"} <= tags
    # one tokenised copy of the corpus in the cache, made by the first run and reused by the second
    assert len([f for f in os.listdir(lm["cache"]) if f.startswith("docs-")]) == 1


def test_every_divergence_trains_a_causal_student(lm, tmp_path):
    for name in ("forward_kl", "jsd", "skew_forward_kl", "skew_reverse_kl", "tvd"):
        run_ok(*causal_args(lm, tmp_path / name, "--teacher_name_or_path", lm["gpt2"], "--student_layers", "0",
                            "--kd_loss", name, "--max_steps", 2, "--report_to", "none", "--do_train"))
        assert os.path.isfile(tmp_path / name / "model.safetensors")


def test_prompt_response_data_trains_on_responses(lm, tmp_path):
    rows = [{"prompt": f"say {toy_sentence(random.Random(i))[0]} :", "response": " good ."} for i in range(40)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = causal_args(lm, tmp_path / "out", "--teacher_name_or_path", lm["gpt2"], "--student_layers", "0",
                       "--report_to", "none")
    args[1] = str(data)
    run_ok(*args)
    assert read_json(tmp_path / "out" / "eval_results.json")["eval_tokens"] < 8 * 6  # responses only


def test_the_distilbert_readme_recipe_runs_with_the_original_flag_names(lm, tmp_path):
    run_ok("--student_type", "distilbert", "--teacher_type", "bert", "--teacher_name", lm["bert"], "--student_config",
           lm["distilbert_cfg"], "--alpha_ce", "5.0", "--alpha_mlm", "2.0", "--alpha_cos", "1.0", "--alpha_clm", "0.0",
           "--mlm", "--dump_path", tmp_path / "out", "--data_file", lm["corpus"], "--max_steps", 3, "--group_by_size",
           "--batch_size", 8, "--max_seq_length", 32, "--data_cache_dir", lm["cache"], "--disable_tqdm",
           "--report_to", "none")
    # the pipeline's command trains, on every line (no --do_eval: nothing held out, nothing evaluated)
    assert read_json(tmp_path / "out" / "train_results.json")["total_optimizer_steps"] == 3
    assert not os.path.exists(tmp_path / "out" / "eval_results.json")
    log = read_json(tmp_path / "out" / "trainer_state.json")["log_history"][0]
    assert log["loss/kd_weighted"] == pytest.approx(5.0 * log["loss/kd"], rel=1e-5)
    assert log["loss/cos_weighted"] == pytest.approx(log["loss/cos"], rel=1e-5)
    assert os.path.isfile(tmp_path / "out" / "bert.token_counts.npy")  # --dump_path: token counts in the dump


def test_masked_lm_resume_after_a_crash_equals_an_uninterrupted_run(lm, tmp_path, monkeypatch):
    argv = ["--teacher_name", lm["bert"], "--student_layers", "0,2", "--alpha_ce", "1", "--alpha_mlm", "1", "--mlm",
            "--train_file", lm["corpus"], "--max_steps", 6, "--save_steps", 2, "--eval_steps", 3,
            "--per_device_train_batch_size", 4, "--gradient_accumulation_steps", 2, "--max_seq_length", 32,
            "--data_cache_dir", lm["cache"], "--disable_tqdm", "--report_to", "none"]
    run_ok(*argv, "--output_dir", tmp_path / "full")
    crash_at_step(monkeypatch, train_lm_distill.main, [*argv, "--output_dir", str(tmp_path / "resumed")], step=5)
    run_ok(*argv, "--output_dir", tmp_path / "resumed")
    assert_same_run(tmp_path / "full", tmp_path / "resumed")


def test_student_layers_copy_exactly_the_listed_teacher_layers(lm):
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM
    teacher = AutoModelForCausalLM.from_pretrained(lm["gpt2"])
    args = SimpleNamespace(model_name_or_path=None, student_config=None)
    student = build_student(args, teacher, mlm=False, layer_ids=[1], seed=0)
    assert student.config.n_layer == 1
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        source = key.replace("transformer.h.0.", "transformer.h.1.")
        assert torch.equal(value, t_state[source]), key


def test_bert_to_distilbert_is_exact():
    from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM
    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=20)).eval()
    with torch.no_grad():  # a non-zero segment-A embedding: the conversion must fold it in
        bert.bert.embeddings.token_type_embeddings.weight.normal_()
    cfg = DistilBertConfig(vocab_size=50, dim=16, n_layers=3, n_heads=2, hidden_dim=32, max_position_embeddings=20)
    distil = DistilBertForMaskedLM(cfg).eval()
    distil.load_state_dict(bert_to_distilbert(bert.state_dict(), [0, 1, 2], bert.config), strict=True)
    ids = torch.randint(5, 50, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        torch.testing.assert_close(distil(input_ids=ids, attention_mask=mask).logits,
                                   bert(input_ids=ids, attention_mask=mask).logits, rtol=1e-5, atol=1e-5)
    two = bert_to_distilbert(bert.state_dict(), [2, 0], bert.config)
    assert torch.equal(two["distilbert.transformer.layer.0.ffn.lin1.weight"],
                       bert.state_dict()["bert.encoder.layer.2.intermediate.dense.weight"])
    assert torch.equal(two["distilbert.transformer.layer.1.attention.q_lin.bias"],
                       bert.state_dict()["bert.encoder.layer.0.attention.self.query.bias"])


def test_a_distilbert_student_from_bert_teacher_layers(lm, tmp_path):
    run_ok("--teacher_name", lm["bert"], "--student_type", "distilbert", "--student_config", lm["distilbert_cfg"],
           "--student_layers", "0,2", "--mlm", "--alpha_ce", "1", "--alpha_mlm", "1", "--train_file", lm["corpus"],
           "--output_dir", tmp_path / "out", "--max_steps", 1, "--learning_rate", "1e-12", "--max_seq_length", 32,
           "--data_cache_dir", lm["cache"], "--disable_tqdm", "--report_to", "none", "--do_train")
    saved = load_file(tmp_path / "out" / "model.safetensors")
    teacher = load_file(os.path.join(lm["bert"], "model.safetensors"))
    torch.testing.assert_close(saved["distilbert.transformer.layer.1.ffn.lin2.weight"],
                               teacher["bert.encoder.layer.2.output.dense.weight"])


@pytest.mark.parametrize("extra, message", [
    (["--mlm", "--alpha_ce", "1"], "--mlm needs --alpha_mlm"),
    (["--mlm", "--alpha_mlm", "1", "--alpha_clm", "0.5"], "exactly one of MLM/CLM"),
    (["--alpha_mlm", "1"], "exactly one of MLM/CLM"),
    (["--kd_ratio", "0.5", "--alpha_ce", "1"], "--kd_ratio sets the weights itself"),
    (["--kd_loss", "kl"], "--kd_loss 'kl' is unknown"),
    (["--jsd_beta", "1.5"], "--jsd_beta must be in"),
    (["--output_dir", "elsewhere"], "are the same flag"),
    (["--n_gpu", "4"], "torchrun --nproc_per_node 4"),
])
def test_bad_flags_are_refused_in_one_line(lm, tmp_path, capsys, extra, message):
    argv = ["--teacher_name", lm["gpt2"], "--student_layers", "0", "--data_file", lm["corpus"], "--dump_path",
            tmp_path / "out", "--report_to", "none", *extra]
    assert message in run_error(capsys, *argv)
    assert not os.path.exists(tmp_path / "out")


def test_teacher_and_student_with_different_vocabularies_are_refused(lm, tmp_path, capsys):
    other = build_bpe_tokenizer(str(tmp_path / "tok"), ["completely different words here"] * 5, vocab_size=270)
    student = build_gpt2(str(tmp_path / "student"), other, layers=1, hidden=32, heads=2, max_positions=64)
    msg = run_error(capsys, "--teacher_name", lm["gpt2"], "--model_name_or_path", student, "--train_file", lm["corpus"],
                    "--output_dir", tmp_path / "out", "--report_to", "none")
    assert "different vocabularies" in msg


def test_kd_flags_without_a_teacher_and_a_too_long_sequence_are_refused(lm, tmp_path, capsys):
    base = ["--model_name_or_path", lm["gpt2"], "--train_file", lm["corpus"], "--output_dir", tmp_path / "out",
            "--report_to", "none"]
    assert "need a teacher" in run_error(capsys, *base, "--alpha_ce", "0.5")
    assert "exceeds the student's 64 positions" in run_error(capsys, *base, "--max_seq_length", "128")


def test_student_from_config_and_pretrained_weights_with_frozen_positions(lm, tmp_path):
    config = json.loads((lm["root"] / "gpt2" / "config.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    run_ok(*causal_args(lm, tmp_path / "out", "--student_config", tmp_path / "cfg.json", "--tokenizer_name", lm["gpt2"],
                        "--student_pretrained_weights", lm["gpt2"], "--freeze_pos_embs", "--max_steps", 2,
                        "--report_to", "none", "--do_train"))
    source = load_file(os.path.join(lm["gpt2"], "model.safetensors"))
    saved = load_file(tmp_path / "out" / "model.safetensors")
    assert torch.equal(saved["transformer.wpe.weight"], source["transformer.wpe.weight"])  # frozen
    assert not torch.equal(saved["transformer.h.0.mlp.c_fc.weight"], source["transformer.h.0.mlp.c_fc.weight"])


def test_a_llama_style_student_is_cut_from_a_llama_teacher_and_distilled(lm, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    tok = AutoTokenizer.from_pretrained(lm["gpt2"])
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    run_ok(*causal_args(lm, tmp_path / "out", "--teacher_name", tmp_path / "llama", "--teacher_type", "llama",
                        "--student_layers", "0,2", "--kd_loss", "skew_reverse_kl", "--kd_ratio", "0.5",
                        "--report_to", "none", "--learning_rate", "1e-12"))  # (the last --learning_rate wins)
    teacher = load_file(tmp_path / "llama" / "model.safetensors")
    student = load_file(tmp_path / "out" / "model.safetensors")
    assert sum(k.startswith("model.layers.") and k.endswith("q_proj.weight") for k in student) == 2
    assert read_json(tmp_path / "out" / "teacher_eval_results.json")["teacher_eval_perplexity"] > 1
    for key in ("mlp.up_proj.weight", "self_attn.k_proj.weight", "input_layernorm.weight"):  # layer 1 <- layer 2
        torch.testing.assert_close(student[f"model.layers.1.{key}"], teacher[f"model.layers.2.{key}"], rtol=0,
                                   atol=1e-6)


def permuted_word_tokenizer(out_dir, seed: int):
    """The toy word-level tokenizer's words in another order: the same size, other ids."""
    from transformers import BertTokenizerFast

    from distill.toy import SPECIAL, VOCAB_WORDS
    words = list(VOCAB_WORDS)
    random.Random(seed).shuffle(words)
    os.makedirs(out_dir, exist_ok=True)
    vocab = os.path.join(out_dir, "vocab.txt")
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("\n".join(SPECIAL + words) + "\n")
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)  # transformers 5 ignores vocab_file=
    assert len(tok) == len(SPECIAL) + len(VOCAB_WORDS) and tok.convert_tokens_to_ids(words[0]) == len(SPECIAL)
    tok.save_pretrained(out_dir)
    return str(out_dir)


def test_a_student_from_config_with_a_tokenizer_the_teacher_does_not_read_is_refused(lm, tmp_path, capsys):
    other = permuted_word_tokenizer(tmp_path / "shuffled", seed=3)
    out = tmp_path / "out"
    msg = run_error(capsys, "--teacher_name", lm["bert"], "--student_type", "distilbert", "--student_config",
                    lm["distilbert_cfg"], "--tokenizer_name", other, "--mlm", "--alpha_ce", "1", "--alpha_mlm", "1",
                    "--train_file", lm["corpus"], "--output_dir", out, "--max_steps", 1, "--max_seq_length", 32,
                    "--data_cache_dir", lm["cache"], "--disable_tqdm", "--report_to", "none", "--do_train")
    assert other in msg and lm["bert"] in msg, msg
    assert not out.exists() or not any(out.iterdir())


def test_a_pretrained_student_s_own_tokenizer_must_agree_with_tokenizer_name(lm, tmp_path, capsys):
    other = permuted_word_tokenizer(tmp_path / "shuffled", seed=4)
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM
    BertForMaskedLM(BertConfig(vocab_size=len(AutoTokenizer.from_pretrained(other)), hidden_size=32,
                               num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=64)).save_pretrained(tmp_path / "student")
    AutoTokenizer.from_pretrained(other).save_pretrained(tmp_path / "student")
    # no teacher: the student, trained on the LM loss alone, must still read the ids it was trained on
    msg = run_error(capsys, "--model_name_or_path", tmp_path / "student", "--tokenizer_name", lm["bert"], "--mlm",
                    "--train_file", lm["corpus"], "--output_dir", tmp_path / "out", "--max_steps", 1,
                    "--max_seq_length", 32, "--data_cache_dir", lm["cache"], "--disable_tqdm", "--report_to", "none")
    assert str(tmp_path / "student") in msg and lm["bert"] in msg, msg


def test_the_readme_recipe_teacher_from_config_then_student_from_config_with_its_tokenizer(lm, tmp_path):
    """docs/lm_distillation.md: a teacher trained from --student_config --tokenizer_name tok, then a
    student from a config with the same --tokenizer_name and that teacher (Tiny Shakespeare's recipe)."""
    config = json.loads((lm["root"] / "gpt2" / "config.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    tok = lm["gpt2"]  # a dir with the BPE tokenizer
    run_ok(*causal_args(lm, tmp_path / "teacher", "--student_config", tmp_path / "cfg.json", "--tokenizer_name", tok,
                        "--report_to", "none", "--do_train", "--max_steps", 1))
    assert os.path.isfile(tmp_path / "teacher" / "tokenizer.json")
    run_ok(*causal_args(lm, tmp_path / "student", "--student_config", tmp_path / "cfg.json", "--tokenizer_name", tok,
                        "--teacher_name", tmp_path / "teacher", "--kd_loss", "reverse_kl", "--kd_ratio", "0.5",
                        "--report_to", "none", "--do_train", "--max_steps", 1))
    assert os.path.isfile(tmp_path / "student" / "model.safetensors")


@pytest.mark.parametrize("kd_loss,extra", [("forward_kl", ["--kd_ratio", "0.5"]),
                                           ("jsd", ["--kd_ratio", "1.0", "--temperature", "2.0"])])
def test_the_fused_output_layer_trains_as_the_models_own_logits(lm, tmp_path, monkeypatch, kd_loss, extra):
    """Causal LM: the loss from final hidden states through the output layers (the default) against the
    same run scoring the models' own (B, T, V) logits (--no_fused_output_layer): the same logged terms
    (logged to 6 significant digits, float32 sums in another order: 1e-4 relative) and the same weights
    after 4 steps (1e-5), a tied GPT-2 output layer included."""
    import losses.fused_vocab as fused_vocab
    seen = []
    real = fused_vocab.fused_vocab_loss_sums

    def spy(student_hidden, *args, **kwargs):
        seen.append(student_hidden.shape[-1])
        return real(student_hidden, *args, **kwargs)
    monkeypatch.setattr("lm.objective.fused_vocab_loss_sums", spy)
    common = ["--teacher_name_or_path", lm["gpt2"], "--student_layers", "1", "--kd_loss", kd_loss,
              "--logging_steps", 1, "--report_to", "none", "--do_train", *extra]
    run_ok(*causal_args(lm, tmp_path / "fused", *common))
    assert len(seen) == 4 and set(seen) == {32}  # every step through the fused loss, on hidden size 32
    run_ok(*causal_args(lm, tmp_path / "logits", *common, "--no_fused_output_layer"))
    assert len(seen) == 4
    logs = [read_json(tmp_path / d / "trainer_state.json")["log_history"] for d in ("fused", "logits")]
    steps = [[e for e in log if "loss/total" in e] for log in logs]
    assert len(steps[0]) == len(steps[1]) == 4
    for a, b in zip(*steps):
        for key in ("loss/total", "loss/kd", "loss/clm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), key
    fused, plain = (load_file(tmp_path / d / "model.safetensors") for d in ("fused", "logits"))
    assert fused.keys() == plain.keys()
    for name in fused:
        assert torch.allclose(fused[name], plain[name], rtol=1e-4, atol=1e-5), name
