"""Student construction from chosen layers, and the teacher/student pairing checks."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from distill.errors import UsageError
from distill.modeling import (
    check_same_vocabulary,
    check_teacher_labels,
    check_vocab_fits,
    is_decoder_only,
    keep_layers,
    label_meaning,
    load_classifier,
    load_pretrained,
    load_tokenizer,
    model_label_names,
    resolve_label_order,
)


@pytest.mark.parametrize("layer_ids", [[0, 2], [3], [1, 2, 3], [0, 1]])
def test_keep_layers_copies_exactly_the_listed_layers(toy, layer_ids):
    source = AutoModelForSequenceClassification.from_pretrained(toy["teacher4"])
    student = keep_layers(source, layer_ids)
    assert student.config.num_hidden_layers == len(layer_ids)
    src, dst = source.state_dict(), student.state_dict()
    for key, value in dst.items():
        if ".layer." in key:
            prefix, rest = key.split(".layer.", 1)
            k, tail = rest.split(".", 1)
            source_key = f"{prefix}.layer.{layer_ids[int(k)]}.{tail}"
        else:  # embeddings, pooler, classifier come over unchanged
            source_key = key
        assert torch.equal(value, src[source_key]), key
    assert len(dst) == len(src) - (4 - len(layer_ids)) * sum(".layer.0." in k for k in src)


def test_num_layers_is_the_first_n_layers(toy):
    model, order = load_classifier(toy["teacher4"], ("negative", "positive"), layer_ids=[0, 1])
    assert order == ["negative", "positive"]
    full = AutoModelForSequenceClassification.from_pretrained(toy["teacher4"])
    torch.testing.assert_close(model.bert.encoder.layer[1].output.dense.weight,
                               full.bert.encoder.layer[1].output.dense.weight)


def test_keep_layers_refuses_missing_layers(toy):
    source = AutoModelForSequenceClassification.from_pretrained(toy["teacher"])
    with pytest.raises(UsageError, match="has 2 layers"):
        keep_layers(source, [0, 5])


TINY = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
MNLI = ("entailment", "neutral", "contradiction")


def labelled(names) -> BertConfig:
    return BertConfig(num_labels=len(names), id2label=dict(enumerate(names)), **TINY)


def test_label_order_from_checkpoint_and_teacher_refusal():
    config = labelled(["contradiction", "entailment", "neutral"])
    assert resolve_label_order(config, MNLI) == ["contradiction", "entailment", "neutral"]
    assert resolve_label_order(BertConfig(num_labels=3), MNLI) == list(MNLI)
    teacher = BertForSequenceClassification(labelled(MNLI))
    check_teacher_labels(teacher, list(MNLI), 3, "t")  # same order: fine
    with pytest.raises(UsageError, match="label order .* differs from the student's"):
        check_teacher_labels(teacher, ["contradiction", "entailment", "neutral"], 3, "t")
    with pytest.raises(UsageError, match="has 3 outputs but the task has 2"):
        check_teacher_labels(teacher, ["a", "b"], 2, "t")


@pytest.mark.parametrize("a,b", [("NEGATIVE", "neg"), ("Pos", "positive"), ("not entailment", "not_entailment"),
                                 ("Non-Entailment", "not_entailment"), ("not_entail", "NOT ENTAILMENT"),
                                 ("entails", "entailment"), ("Entailed", "ENTAILMENT"), ("contra", "contradiction"),
                                 ("Not Duplicate", "not_duplicate"), ("not-equivalent", "NOT_EQUIVALENT")])
def test_label_names_of_one_meaning(a, b):
    assert label_meaning(a) == label_meaning(b)


@pytest.mark.parametrize("a,b", [("negative", "positive"), ("entailment", "not_entailment"), ("neg", "not_neg"),
                                 ("unacceptable", "acceptable"), ("neutral", "contradiction"), ("0", "1")])
def test_label_names_of_other_meanings(a, b):
    assert label_meaning(a) != label_meaning(b)


@pytest.mark.parametrize("saved,task,order", [
    (["NEG", "POS"], ("negative", "positive"), ["negative", "positive"]),  # SST-2
    (["negative", "positive"], ("neg", "pos"), ["neg", "pos"]),  # IMDB
    (["POSITIVE", "NEGATIVE"], ("neg", "pos"), ["pos", "neg"]),  # IMDB, flipped: kept (and refused by the script)
    (["ENTAILMENT", "not entailment"], ("entailment", "not_entailment"), ["entailment", "not_entailment"]),  # QNLI
    (["CONTRADICTION", "Entailment", "NEUTRAL"], MNLI, ["contradiction", "entailment", "neutral"]),
    (["1", "0"], ("0", "1"), ["1", "0"]),  # a custom task's names are its files' labels
    (["pos", "Pos"], ("Pos", "pos"), ["pos", "Pos"]),  # custom labels differing only in case stay apart
])
def test_the_student_keeps_the_checkpoints_order_named_by_meaning(saved, task, order):
    assert resolve_label_order(labelled(saved), task) == order


@pytest.mark.parametrize("saved", [["LABEL_0", "LABEL_1"], ["0", "1"], ["0", "LABEL_1"]])
def test_generic_names_mean_the_tasks_order(saved, caplog):
    assert model_label_names(labelled(saved)) is None
    assert resolve_label_order(labelled(saved), ("neg", "pos")) == ["neg", "pos"]
    # a teacher that learns takes the student's order (it is trained on the student's label ids)
    assert resolve_label_order(labelled(saved), ("neg", "pos"), default=["pos", "neg"]) == ["pos", "neg"]
    assert not caplog.records


@pytest.mark.parametrize("saved,task,order", [
    (["1", "0"], ("negative", "positive"), ["positive", "negative"]),  # SST-2's own coding, flipped
    (["LABEL_2", "LABEL_0", "LABEL_1"], MNLI, ["contradiction", "entailment", "neutral"]),
])
def test_ids_as_names_are_the_tasks_labels_of_those_ids(saved, task, order, caplog):
    assert resolve_label_order(labelled(saved), task) == order
    assert not caplog.records
    teacher = BertForSequenceClassification(labelled(saved))
    check_teacher_labels(teacher, order, len(order), "t", task_labels=task)  # a student of that order: fine
    with pytest.raises(UsageError, match="differs from the student's"):
        check_teacher_labels(teacher, list(task), len(task), "t", task_labels=task)


def test_a_teacher_with_generic_names_has_the_tasks_order_like_a_student(caplog):
    """Ids at their own rows mean the task's order for both models: with a student read as reversed
    (its names are the ids 1, 0), such a teacher is another order."""
    student = resolve_label_order(labelled(["1", "0"]), ("negative", "positive"))
    for saved in (["0", "1"], ["LABEL_0", "LABEL_1"], ["label_0", "Label-1"]):
        teacher = BertForSequenceClassification(labelled(saved))
        with pytest.raises(UsageError, match="generic label names, i.e. the task's order"):
            check_teacher_labels(teacher, student, 2, "t", task_labels=("negative", "positive"))
        check_teacher_labels(teacher, ["negative", "positive"], 2, "t", task_labels=("negative", "positive"))
    assert resolve_label_order(labelled(["label_1", "label_0"]), ("negative", "positive")) == student


@pytest.mark.parametrize("saved", [["negative", "positive"], ["7", "8"], ["POS", "pos"]])
def test_names_of_no_task_label_relabel_the_student_with_a_warning(saved, caplog):
    assert model_label_names(labelled(saved)) == saved  # as saved, for messages
    assert resolve_label_order(labelled(saved), ("entailment", "not_entailment")) == ["entailment", "not_entailment"]
    assert "re-labelled" in caplog.text


@pytest.mark.parametrize("saved,student", [
    (["NEGATIVE", "POSITIVE"], ["neg", "pos"]), (["NEG", "POS"], ["negative", "positive"]),
    (["Entailment", "NOT ENTAILMENT"], ["entailment", "not_entailment"]),
    (["CONTRADICTION", "ENTAILMENT", "NEUTRAL"], ["contradiction", "entailment", "neutral"]),
])
def test_a_teacher_of_the_students_order_by_meaning_is_accepted(saved, student, caplog):
    check_teacher_labels(BertForSequenceClassification(labelled(saved)), student, len(student), "t")
    assert not caplog.records


@pytest.mark.parametrize("saved", [["0", "1"], ["LABEL_0", "LABEL_1"]])
def test_a_teacher_with_generic_names_is_assumed_in_the_students_order(saved, caplog):
    check_teacher_labels(BertForSequenceClassification(labelled(saved)), ["pos", "neg"], 2, "t")
    assert "generic label names; assuming its label order is ['pos', 'neg']" in caplog.text


@pytest.mark.parametrize("saved,student", [
    (["NEGATIVE", "POSITIVE"], ["pos", "neg"]),
    (["contradiction", "entailment", "neutral"], list(MNLI)),
    (["negative", "positive"], ["entailment", "not_entailment"]),  # a sentiment teacher on an NLI task
    (["1", "0"], ["0", "1"]),
])
def test_a_teacher_of_another_order_or_other_labels_is_refused_naming_its_labels_as_saved(saved, student):
    with pytest.raises(UsageError) as refused:
        check_teacher_labels(BertForSequenceClassification(labelled(saved)), student, len(student), "t")
    assert str(refused.value).startswith(f"teacher 't' label order {saved} differs from the student's {student}; ")


def test_vocabulary_mismatch_is_refused(toy, tmp_path):
    from transformers import AutoTokenizer

    from distill.toy import SPECIAL, VOCAB_WORDS
    tok = AutoTokenizer.from_pretrained(toy["tokenizer"])
    check_same_vocabulary(tok, AutoTokenizer.from_pretrained(toy["tokenizer"]), "same")
    (tmp_path / "vocab.txt").write_text("\n".join(SPECIAL + list(reversed(VOCAB_WORDS))) + "\n")
    from transformers import BertTokenizerFast
    other = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    with pytest.raises(UsageError, match="different vocabularies"):
        check_same_vocabulary(tok, other, "other")


# ---------------------------------------------------------------- model dirs users get wrong
def test_a_dir_without_tokenizer_files_is_refused_and_its_model_still_loads(toy, tmp_path):
    """transformers builds a 5-token tokenizer from config.json alone (every word -> [UNK]); the model
    itself is fine, and runs with --tokenizer_name."""
    import shutil
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{toy['student']}/{name}", bare / name)
    with pytest.raises(UsageError, match=r"bare holds no tokenizer files .*\[UNK\].*pass --tokenizer_name"):
        load_tokenizer(str(bare))
    tokenizer = load_tokenizer(toy["tokenizer"])  # what --tokenizer_name loads
    model, _ = load_classifier(str(bare), ("negative", "positive"))
    check_vocab_fits(model, tokenizer, "student")
    (bare / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')  # still no vocabulary
    with pytest.raises(UsageError, match="knows only its 5 special tokens"):
        load_tokenizer(str(bare))


def test_decoder_only_models_are_told_apart_from_encoders():
    from transformers import BertConfig, GPT2Config, LlamaConfig, T5Config, XLNetConfig
    assert is_decoder_only(GPT2Config()) and is_decoder_only(LlamaConfig())
    assert not any(is_decoder_only(c) for c in (BertConfig(), XLNetConfig(), T5Config()))


def test_a_frozen_teacher_must_come_whole_from_its_checkpoint(toy, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoModelForQuestionAnswering
    assert load_pretrained(AutoModelForSequenceClassification, toy["teacher"], what="the teacher", complete=True)
    with pytest.raises(UsageError, match="without a trained question-answering head.*qa_outputs"):
        load_pretrained(AutoModelForQuestionAnswering, toy["teacher"], what="the teacher", complete=True)
    with pytest.raises(UsageError, match="without a trained masked-LM head"):
        load_pretrained(AutoModelForMaskedLM, toy["teacher"], what="the teacher", complete=True)
    student = load_pretrained(AutoModelForQuestionAnswering, toy["teacher"], what="the student")  # a new head: fine
    with pytest.raises(UsageError, match=r"tokenizer has 60 tokens but the student has embeddings for \d+"):
        check_vocab_fits(student, 60, "student")


def test_a_student_cut_from_a_model_with_per_layer_attention_kinds_keeps_each_layers_kind():
    """Qwen 2 (like Gemma 2 and ModernBERT) lists each layer's attention kind in `layer_types`; cutting layers
    0 and 3 keeps their kinds (a config whose list no longer matches its layer count is refused by
    transformers), and the student computes what those layers of the source compute."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from distill.modeling import keep_layers
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=8,
                         max_window_layers=2)
    source = Qwen2ForCausalLM(config).eval()
    assert source.config.layer_types == ["full_attention", "full_attention", "sliding_attention", "sliding_attention"]
    student = keep_layers(source, [0, 3]).eval()
    assert student.config.layer_types == ["full_attention", "sliding_attention"]
    assert student.config.num_hidden_layers == 2
    for name, value in student.model.layers[1].state_dict().items():
        assert torch.equal(value, source.model.layers[3].state_dict()[name]), name
    assert student(input_ids=torch.arange(12)[None]).logits.shape == (1, 12, 64)
