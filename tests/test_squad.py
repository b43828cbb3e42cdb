"""SQuAD: the official EM/F1 rules, windows with a document stride, n-best post-processing across
windows, the span objective, and run_squad_w_distillation.py end to end on a toy SQuAD."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import run_squad_w_distillation as squad_script
from squad.data import SquadExample, read_squad_json, split_by_article
from squad.metrics import exact_match, f1, normalize_answer, squad_scores
from squad.objective import QuestionAnsweringObjective
from squad.postprocess import best_spans
from squad.windows import EvalFeatureMap, eval_features, train_features

SHARED_SQUAD = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "squad", "dev-v1.1.json")


# ---------------------------------------------------------------- official scoring
@pytest.mark.parametrize("raw,normal", [
    ("The Eiffel Tower", "eiffel tower"),
    ("an apple, a pear and the fig!", "apple pear and fig"),
    ("  multiple   spaces\tand\nnewlines ", "multiple spaces and newlines"),
    ("Theatre anthem", "theatre anthem"),  # "the" only as a whole word
    ("U.S.-based (1990s)", "usbased 1990s"),  # punctuation dropped, not replaced by a space
    ("A", ""),
])
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_and_f1_on_tricky_strings():
    assert exact_match("the Denver Broncos", "Denver Broncos.") == 1.0
    assert exact_match("Denver", "Denver Broncos") == 0.0
    assert f1("Denver", "Denver Broncos") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert f1("broncos broncos denver", "denver broncos") == pytest.approx(2 * (2 / 3) * 1.0 / (2 / 3 + 1.0))
    assert f1("a", "the") == 0.0  # both normalise to nothing: no overlap
    assert f1("Santa Clara, California", "Levi's Stadium") == 0.0


def test_scores_take_the_best_gold_answer_and_count_unanswered_questions_as_zero():
    gold = {"q1": ["Denver Broncos", "The Broncos"], "q2": ["1990"], "q3": ["Paris"], "q4": ["x y"]}
    preds = {"q1": "broncos", "q2": "in 1990", "q4": "x y"}  # q3 unanswered
    scores = squad_scores(gold, preds)
    # q1: EM with "The Broncos" after normalisation; q2: F1 2·(1/2·1)/(1/2+1) = 2/3; q3: 0; q4: 1
    assert scores["exact_match"] == pytest.approx(100 * 2 / 4)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4)


# ---------------------------------------------------------------- windows and post-processing
@pytest.fixture(scope="module")
def tok(toy):
    return AutoTokenizer.from_pretrained(toy["tokenizer"])


def _examples(toy_squad_file):
    return read_squad_json(toy_squad_file)


@pytest.fixture(scope="module")
def squad_files(tmp_path_factory):
    from toys import toy_squad
    root = tmp_path_factory.mktemp("squad")
    paths = {}
    for name, seed, n in (("train", 0, 60), ("dev", 1, 10)):
        paths[name] = str(root / f"{name}.json")
        with open(paths[name], "w", encoding="utf-8") as f:
            json.dump(toy_squad(n_articles=n, clauses=6, seed=seed), f)
    return paths


def test_train_windows_label_the_answer_tokens_or_cls(tok, squad_files):
    examples = _examples(squad_files["train"])[:30]  # one question per paragraph, 6 clauses each
    ds = train_features(examples, tok, max_seq_length=24, doc_stride=6, max_query_length=8)
    assert len(ds) > len(examples)  # long contexts became several windows
    enc = tok([e.question for e in examples], [e.context for e in examples], truncation="only_second", max_length=24,
              stride=6, return_overflowing_tokens=True, return_offsets_mapping=True)
    inside = outside = 0
    for i, (start, end) in enumerate(ds.columns["labels"]):
        ex = examples[enc["overflow_to_sample_mapping"][i]]
        if start == 0:
            outside += 1
            continue
        inside += 1
        offsets = enc["offset_mapping"][i]
        assert ex.context[offsets[start][0]:offsets[end][1]] == ex.answers[0]
    assert inside >= len(examples) and outside > 0  # every answer is inside at least one window


def test_postprocessing_picks_the_best_valid_span_across_windows():
    context = "alpha beta gamma delta epsilon"
    ex = SquadExample("q", "", context, "?", ["delta"], [17])
    # two windows over the context; token offsets (None: question/special tokens)
    w1 = [None, None, (0, 5), (6, 10), (11, 16), None]
    w2 = [None, None, (11, 16), (17, 22), (23, 30), None]
    fmap = EvalFeatureMap([0, 0], [w1, w2])
    logits = np.full((2, 7, 2), -5.0)  # one column more than the windows: padding, never read
    logits[0, 0] = [9.0, 9.0]  # [CLS]: highest, but not a context token
    logits[0, 3] = [2.0, 1.0]  # "beta" in window 1: score 3
    logits[1, 3] = [3.0, 2.5]  # "delta" in window 2: score 5.5, the best valid span
    logits[1, 4, 0] = 8.0  # start at "epsilon" with end "delta": end < start, invalid
    logits[:, 6] = 50.0  # padding position beyond the window
    assert best_spans([ex], fmap, logits, n_best_size=5, max_answer_length=30) == {"q": "delta"}
    # a span longer than max_answer_length is refused: start "gamma" .. end "epsilon" (3 tokens)
    logits2 = np.full((2, 7, 2), -5.0)
    logits2[1, 2, 0], logits2[1, 4, 1] = 6.0, 6.0
    logits2[1, 3] = [1.0, 0.5]  # 2-token spans: gamma..delta 6.5 < delta..epsilon 7.0
    assert best_spans([ex], fmap, logits2, n_best_size=5, max_answer_length=2)["q"] == "delta epsilon"
    assert best_spans([ex], fmap, logits2, n_best_size=5, max_answer_length=3)["q"] == "gamma delta epsilon"


def test_eval_windows_map_context_offsets_only(tok, squad_files):
    examples = _examples(squad_files["dev"])[:5]
    ds, fmap = eval_features(examples, tok, max_seq_length=24, doc_stride=6, max_query_length=8)
    assert len(ds) == len(fmap.offsets) == len(fmap.example_index) and "labels" not in ds.columns
    for f, offsets in enumerate(fmap.offsets):
        ex = examples[fmap.example_index[f]]
        spans = [ex.context[a:b] for a, b in (o for o in offsets if o is not None)]
        assert spans and all(s and s in ex.context for s in spans)
        assert offsets[0] is None  # [CLS]


def test_span_objective_masks_padding_and_matches_a_direct_computation():
    obj = QuestionAnsweringObjective(True, alpha_squad=0.5, alpha_ce=0.5, temperature=2.0)
    g = torch.Generator().manual_seed(0)
    start, end = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    t_start, t_end = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    batch = {"attention_mask": mask, "labels": torch.tensor([[1, 3], [0, 2]])}

    class Out:
        def __init__(self, s, e):
            self.start_logits, self.end_logits = s, e
    sums = obj.loss_sums(batch, Out(start, end), Out(t_start, t_end))
    # direct: the second example's softmax covers its 3 real positions only
    ce = lambda x, y, n: -torch.log_softmax(x[:n], 0)[y]  # noqa: E731
    expected = 0.5 * (ce(start[0], 1, 5) + ce(end[0], 3, 5)) + 0.5 * (ce(start[1], 0, 3) + ce(end[1], 2, 3))
    assert float(sums["squad"]) == pytest.approx(float(expected), rel=1e-5)

    def kl(s, t, n):
        p = torch.softmax(t[:n] / 2, 0)
        return 4 * (p * (torch.log(p) - torch.log_softmax(s[:n] / 2, 0))).sum()
    expected_kd = 0.5 * (kl(start[0], t_start[0], 5) + kl(end[0], t_end[0], 5)
                         + kl(start[1], t_start[1], 3) + kl(end[1], t_end[1], 3))
    assert float(sums["kd"]) == pytest.approx(float(expected_kd), rel=1e-5)
    # changing the logits at padding positions changes nothing
    start2 = start.clone()
    start2[1, 3:] = 100.0
    assert float(obj.loss_sums(batch, Out(start2, end), Out(t_start, t_end))["squad"]) == pytest.approx(
        float(sums["squad"]), rel=1e-6)


def test_split_by_article_keeps_articles_whole(squad_files):
    train, dev = split_by_article(squad_files["train"], 0.25, seed=0)
    titles = lambda d: {a["title"] for a in d["data"]}  # noqa: E731
    assert titles(train).isdisjoint(titles(dev)) and len(titles(dev)) == 15 and len(titles(train)) == 45


@pytest.mark.skipif(not os.path.isfile(SHARED_SQUAD), reason="../shared/data/squad not present")
def test_real_squad_dev_file_flattens_to_the_official_counts():
    examples = read_squad_json(SHARED_SQUAD)
    assert len(examples) == 10570 and sum(len(e.answers) for e in examples) == 34726


# ---------------------------------------------------------------- the script, end to end
@pytest.fixture(scope="module")
def qa_models(toy, tmp_path_factory):
    from transformers import BertConfig, BertForQuestionAnswering, DistilBertConfig, DistilBertForQuestionAnswering
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    root = tmp_path_factory.mktemp("qa")
    torch.manual_seed(0)
    bert = BertForQuestionAnswering(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=2, intermediate_size=64,
                                               max_position_embeddings=64))
    distil = DistilBertForQuestionAnswering(DistilBertConfig(vocab_size=len(tok), dim=32, n_layers=1, n_heads=2,
                                                             hidden_dim=64, max_position_embeddings=64))
    paths = {}
    for name, model in (("bert", bert), ("distilbert", distil)):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths


FAST = ["--max_seq_length", "48", "--doc_stride", "16", "--max_query_length", "12", "--per_device_train_batch_size",
        "16", "--per_device_eval_batch_size", "16", "--learning_rate", "3e-3", "--report_to", "none",
        "--disable_tqdm", "--logging_steps", "1"]


def test_teacher_fine_tuning_then_the_seed_distillation_command(qa_models, squad_files, tmp_path):
    teacher_dir = tmp_path / "teacher"
    assert squad_script.main([str(a) for a in [
        "--model_type", "bert", "--model_name_or_path", qa_models["bert"], "--output_dir", teacher_dir,
        "--train_file", squad_files["train"], "--predict_file", squad_files["dev"], "--do_train", "--do_eval",
        "--do_lower_case", "--num_train_epochs", "4", *FAST]]) == 0
    assert set(json.load(open(teacher_dir / "eval_results.json"))) >= {"eval_exact_match", "eval_f1"}
    teacher_logs = [e for e in json.load(open(teacher_dir / "trainer_state.json"))["log_history"] if "loss/squad" in e]
    assert teacher_logs[-1]["loss/squad"] < 0.75 * teacher_logs[0]["loss/squad"]  # it learns

    out = tmp_path / "student"
    assert squad_script.main([str(a) for a in [  # the seed command, paths aside
        "--model_type", "distilbert", "--model_name_or_path", qa_models["distilbert"], "--teacher_type", "bert",
        "--teacher_name_or_path", teacher_dir, "--output_dir", out, "--train_file", squad_files["train"],
        "--predict_file", squad_files["dev"], "--do_train", "--do_eval", "--do_lower_case", "--alpha_cos", "0.0",
        "--alpha_corr", "0.5", "--alpha_ce", "0.0", "--alpha_squad", "0.5", "--num_train_epochs", "3", *FAST]]) == 0
    preds = json.load(open(out / "predictions.json"))
    gold = {e.id: e.answers for e in read_squad_json(squad_files["dev"])}
    assert set(preds) == set(gold)
    scores = squad_scores(gold, preds)
    results = json.load(open(out / "eval_results.json"))
    assert results["eval_exact_match"] == pytest.approx(scores["exact_match"])
    assert results["eval_f1"] == pytest.approx(scores["f1"])
    logs = [e for e in json.load(open(out / "trainer_state.json"))["log_history"] if "loss/total" in e]
    for e in logs:
        assert e["loss/total"] == pytest.approx(0.5 * e["loss/squad"] + 0.5 * e["loss/corr"] + 0.0 * e["loss/kd"],
                                                rel=1e-4, abs=1e-6)
    assert "loss/hidden_cos" not in logs[0]


def test_squad_misuse_is_refused_in_one_line(qa_models, squad_files, tmp_path, capsys):
    base = ["--model_name_or_path", qa_models["distilbert"], "--output_dir", tmp_path / "o", "--do_train",
            "--train_file", squad_files["train"], *FAST]
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"rows": []}')
    cases = [
        (["--model_type", "bert"], "--model_type"),
        (["--train_file", tmp_path / "missing.json"], "not found"),
        (["--train_file", bad_json], "SQuAD format"),
        (["--doc_stride", "40"], "--doc_stride"),
        (["--teacher_name_or_path", qa_models["bert"], "--alpha_mse", "1", "--max_seq_length", "80"], "positions"),
    ]
    for extra, needle in cases:
        assert squad_script.main([str(a) for a in [*base, *extra]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (extra, err)


def test_questions_whose_answer_fits_in_no_window_are_counted(tok, squad_files, caplog):
    """As in HF run_qa.py they still train (every window labelled [CLS]); the count is logged."""
    examples = _examples(squad_files["train"])[:4]
    long = SquadExample("long", "", examples[0].context, examples[0].question, [examples[0].context], [0])
    with caplog.at_level("WARNING", logger="squad.windows"):
        train_features([*examples, long], tok, max_seq_length=24, doc_stride=6, max_query_length=8)
    assert "1 of 5 training questions have their answer in no window" in caplog.text
