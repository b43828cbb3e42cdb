"""Loading students and teachers, building a student from chosen layers, and the pairing checks.

Teacher and student must share the vocabulary (their input ids are the same tensors) and, for
classification, the label order (the KD term compares logit j of one with logit j of the other).
Both are checked once at start, with a message that names the fix.
"""
from __future__ import annotations

import inspect
import logging
import os
import re

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from distill.errors import UsageError
from distill.model_files import check_model_files, has_tokenizer_files

logger = logging.getLogger(__name__)

PROBE_TEXT = "The quick brown fox jumps over the lazy dog; distillation costs 42.5%, naïvely."
_GENERIC_LABEL = re.compile(r"^(label[\s_-]?)?(\d+)$", re.IGNORECASE)
# The usual other spellings of label names (keys as label_meaning writes them), each with one meaning in
# every task; a "not_"/"non_" prefix is read apart (not_entail, non_entailment: not_entailment).
LABEL_SPELLINGS = {"neg": "negative", "pos": "positive", "entail": "entailment", "entails": "entailment",
                   "entailed": "entailment", "contra": "contradiction", "contradicts": "contradiction"}


def _load(what: str, loader, name_or_path: str, fix: str, *, check_weights: bool = False, **kwargs):
    """`loader(name_or_path, **kwargs)`; any failure (missing dir, Hub offline, corrupt files) becomes
    one UsageError line naming what could not be loaded, from where, why, and the fix. A local model
    dir's own files are checked first, so that a damaged one is named (transformers' errors often
    do not say which file, or blame another)."""
    if (os.path.isabs(name_or_path) or name_or_path.startswith(".")) and not os.path.exists(name_or_path):
        raise UsageError(f"could not load {what}: {name_or_path} does not exist; {fix}")
    if check_weights and os.path.isfile(name_or_path):
        raise UsageError(f"could not load {what}: {name_or_path} is a file; pass the model's dir (the one holding "
                         "config.json and the weights) or a Hub id")
    check_model_files(name_or_path, check_weights)
    try:
        loaded = loader(name_or_path, **kwargs)
    except Exception as e:
        reason = (str(e).splitlines() or [""])[0][:200]
        if "weights_only" in reason:  # torch's advice to unpickle an unknown file is not ours to give
            reason = "its weights are pickled objects, which could run code and are not loaded"
            fix = "convert the weights to safetensors (model.save_pretrained) or use a model dir that has them"
        raise UsageError(f"could not load {what} from {name_or_path!r} ({type(e).__name__}: {reason}); {fix}") from None
    if kwargs.get("trust_remote_code") is False and declares_own_code(loaded):
        # transformers did not run the repo's code and fell back to its built-in class, which may not be
        # the model the repo means: refuse rather than train something else.
        raise UsageError(f"{name_or_path!r} declares its own model code (auto_map); it was not run. Pass "
                         "--trust_remote_code to run it (only for code you trust), or use a built-in architecture")
    return loaded


def declares_own_code(loaded) -> bool:
    """A loaded config, model or tokenizer whose files name custom code (`auto_map`)."""
    config = getattr(loaded, "config", loaded)
    return bool(getattr(config, "auto_map", None) or getattr(loaded, "init_kwargs", {}).get("auto_map"))


TOKENIZER_FIX = "pass --tokenizer_name with the tokenizer this model was trained with (a model dir or Hub id)"


def load_tokenizer(name_or_path: str, cache_dir: str | None = None, trust_remote_code: bool = False,
                   fix: str = TOKENIZER_FIX):
    """The tokenizer of a model dir or Hub id. A dir without tokenizer files is refused: transformers
    would build a tokenizer from config.json alone whose vocabulary is its special tokens, so every
    word becomes [UNK] and training runs on nothing, silently."""
    if os.path.isdir(name_or_path) and not has_tokenizer_files(name_or_path):
        check_model_files(name_or_path, weights=False)
        raise UsageError(f"{name_or_path} holds no tokenizer files (tokenizer.json, vocab.txt, ...), so every word "
                         f"would become [UNK]; {fix}")
    tokenizer = _load("a tokenizer", AutoTokenizer.from_pretrained, name_or_path,
                      "pass a model dir with tokenizer files, a Hub id (online), or --tokenizer_name",
                      cache_dir=cache_dir, trust_remote_code=trust_remote_code)
    try:
        words = set(tokenizer.get_vocab().values()) - set(tokenizer.all_special_ids)
    except Exception:  # a tokenizer that cannot list its vocabulary: nothing to check cheaply
        words = {None}
    if not words:
        raise UsageError(f"the tokenizer of {name_or_path} knows only its {len(tokenizer)} special tokens (a "
                         f"vocabulary file is missing?), so every word would become [UNK]; {fix}")
    return tokenizer


def embedding_rows(model: PreTrainedModel) -> int | None:
    """How many token ids the model has embeddings for."""
    try:
        return int(model.get_input_embeddings().weight.shape[0])
    except (AttributeError, NotImplementedError):
        return getattr(model.config, "vocab_size", None)


def check_vocab_fits(model: PreTrainedModel, tokenizer, which: str) -> None:
    """Every id the tokenizer can give must have an embedding row (else the first batch holding one
    fails with an index error mid-training, or worse on a GPU: a device-side assert)."""
    size = tokenizer if isinstance(tokenizer, int) else len(tokenizer)
    rows = embedding_rows(model)
    if rows is not None and size < rows // 2:  # models pad their vocabulary a little, never by half
        logger.warning("the tokenizer has %d tokens but the %s has embeddings for %d: is it the %s's own tokenizer?",
                       size, which, rows, which)
    if rows is not None and size > rows:
        raise UsageError(f"the tokenizer has {size} tokens but the {which} has embeddings for {rows} "
                         f"(ids 0..{rows - 1}); "
                         f"use the {which}'s own tokenizer (--tokenizer_name) or models and a tokenizer of the same "
                         "vocabulary")


# What a frozen teacher of each head must be, and its head's name (see check_complete).
EXPECTED_CHECKPOINT = {
    AutoModelForSequenceClassification: ("classification head", "a sequence-classification checkpoint fine-tuned on "
                                                                "the task"),
    AutoModelForQuestionAnswering: ("question-answering head", "a question-answering checkpoint fine-tuned on SQuAD"),
    AutoModelForMaskedLM: ("masked-LM head", "a masked-LM checkpoint (e.g. BertForMaskedLM)"),
    AutoModelForCausalLM: ("causal-LM head", "a causal-LM checkpoint (e.g. GPT2LMHeadModel)"),
}
ENCODER_HEADS = (AutoModelForSequenceClassification, AutoModelForQuestionAnswering)
ENCODER_FIX = "pass an encoder checkpoint (BERT-like: bert, distilbert, roberta, ...)"


def is_decoder_only(config) -> bool:
    """A GPT-style model (GPT-2, Llama, ...): it has a causal LM and no masked LM. XLNet (a permutation
    LM used as an encoder in its paper's GLUE results) and encoder-decoders are not."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES as MASKED
    model_type = getattr(config, "model_type", None)
    return (model_type in CAUSAL and model_type not in MASKED
            and model_type != "xlnet" and not getattr(config, "is_encoder_decoder", False))


def check_encoder(config, name_or_path: str, what: str, fix: str = ENCODER_FIX) -> None:
    """The classification and QA pipelines feed encoders ([CLS] first, token types, right padding); a
    decoder-only checkpoint would get a randomly initialised head and (GPT-2) its token types added
    through the word embeddings, training something else silently, or fail mid-run."""
    if is_decoder_only(config):
        arch = (getattr(config, "architectures", None) or [config.model_type])[0]
        raise UsageError(f"{what} {name_or_path!r} is a {arch} checkpoint ({config.model_type}, a decoder-only causal "
                         f"LM); {fix}")


def check_complete(model: PreTrainedModel, missing_keys, auto_class, name_or_path: str, what: str) -> None:
    """A teacher is used as saved: every weight must come from its checkpoint. Missing ones (the head
    of a checkpoint saved for another task, e.g. a pretrained BertForMaskedLM as a classification
    teacher) would be random, and the student would learn from noise."""
    base = getattr(model, "base_model_prefix", "") + "."
    missing = sorted(missing_keys or [], key=lambda k: (k.startswith(base), k))  # the head's first: it names the cause
    if missing:
        head, expected = EXPECTED_CHECKPOINT.get(auto_class, ("head", "a checkpoint fine-tuned for this"))
        arch = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
        raise UsageError(f"{what} {name_or_path!r} is a {arch} checkpoint without a trained {head}: {len(missing)} "
                         f"weight(s) of {type(model).__name__} are not in it ({', '.join(missing[:2])}"
                         f"{f' and {len(missing) - 2} more' if len(missing) > 2 else ''}) and would be "
                         f"random; pass {expected}")


def _label_id(name) -> int | None:
    """The class id a name states: transformers' default LABEL_<i>, or a bare id ("1"); else None."""
    match = _GENERIC_LABEL.match(str(name).strip())
    return int(match.group(2)) if match else None


def _is_generic(label_id: int, name) -> bool:
    """A name that says nothing: the id of its own row (LABEL_1 or "1" at id 1)."""
    return _label_id(name) == label_id


def ids_as_task_labels(names: list[str], task_labels) -> list[str]:
    """Names that state a class id (a dataset's own integer coding: SST-2's "1" is positive) as the task's
    label of that id; other names as they are. ["1", "0"] on SST-2 is a head in the order positive,
    negative."""
    ids = [_label_id(name) for name in names]
    return [task_labels[i] if i is not None and 0 <= i < len(task_labels) else name for name, i in zip(names, ids)]


def model_label_names(config) -> list[str] | None:
    """The checkpoint's label names in id order, as saved; None when they are generic (LABEL_0, "0", ...)."""
    id2label = config.id2label or {}
    names = [str(id2label[i]) for i in sorted(id2label)]
    if not names or all(_is_generic(i, name) for i, name in zip(sorted(id2label), names)):
        return None
    return names


def label_meaning(name) -> str:
    """What a label name means, to compare the names of checkpoints and datasets: case and the separators
    '-', ' ', '_' do not matter, nor the usual spellings (NEG, entails, non-entailment)."""
    key = re.sub(r"[\s_-]+", "_", str(name).strip().lower())
    for negation in ("not_", "non_"):
        if key.startswith(negation):
            return "not_" + label_meaning(key[len(negation):])
    return LABEL_SPELLINGS.get(key, key)


def match_labels(names: list[str], labels) -> list[str] | None:
    """`labels` in the order `names` gives them, each name matched to the label of its meaning; None
    unless every name matches a different label. An exact name wins, so that labels of a custom task
    that differ only in case stay apart."""
    if len(names) != len(labels):
        return None
    matched = []
    for name in names:
        same = [lab for lab in labels if lab == name] or [lab for lab in labels
                                                          if label_meaning(lab) == label_meaning(name)]
        if len(same) != 1:
            return None
        matched.append(same[0])
    return matched if len(set(matched)) == len(labels) else None


def resolve_label_order(config, task_labels: tuple[str, ...], default: list[str] | None = None) -> list[str]:
    """The label order a classifier loaded from `config` is used with, in the task's names: the
    checkpoint's own order when its names mean the task's labels (an MNLI hub checkpoint with another
    order, NEGATIVE/POSITIVE for neg/pos), else `default` (the task's order unless given)."""
    default = list(task_labels) if default is None else list(default)
    names = model_label_names(config)
    order = match_labels(ids_as_task_labels(names, task_labels), task_labels) if names else None
    if order:
        return order
    if names and len(names) == len(task_labels):
        logger.warning("checkpoint labels %s are not the task's %s; the head is re-labelled %s", names,
                       list(task_labels), default)
    return default


def saved_label_names(name_or_path: str, cache_dir: str | None = None, trust_remote_code: bool = False):
    """A checkpoint's label names as saved (None when generic), for messages: load_classifier re-labels."""
    return model_label_names(load_source_config(name_or_path, cache_dir, trust_remote_code))


def load_classifier(name_or_path: str, task_labels: tuple[str, ...], *, config_name: str | None = None,
                    cache_dir: str | None = None, trust_remote_code: bool = False,
                    layer_ids: list[int] | None = None, what: str = "the student",
                    default_order: list[str] | None = None) -> tuple[PreTrainedModel, list[str]]:
    """The student: a sequence classifier for the task's labels (one output when there are none:
    regression), optionally cut down to the listed layers. Returns it with its label order
    (see resolve_label_order; `default_order` for a head without the task's names)."""
    config = load_source_config(config_name or name_or_path, cache_dir, trust_remote_code)
    check_encoder(config, config_name or name_or_path, what)
    label_order = resolve_label_order(config, task_labels, default_order) if task_labels else []
    num_labels = len(task_labels) or 1
    config.num_labels = num_labels
    if label_order:
        config.id2label = dict(enumerate(label_order))
        config.label2id = {name: i for i, name in enumerate(label_order)}
    config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    # ignore_mismatched_sizes: a head of another size (e.g. MNLI's 3 labels for a 2-label task) is re-made.
    model = _load("model weights", AutoModelForSequenceClassification.from_pretrained, name_or_path,
                  "pass a local model dir or a Hub id (online)", check_weights=True, config=config,
                  cache_dir=cache_dir, trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True)
    if layer_ids is not None:
        model = keep_layers(model, layer_ids)
    return model, label_order


def load_teacher(name_or_path: str, cache_dir: str | None = None, trust_remote_code: bool = False) -> PreTrainedModel:
    """The teacher exactly as saved: its head is never resized or re-initialised (a head that does
    not fit the task is refused by check_teacher_labels instead, a missing one by check_complete)."""
    return load_pretrained(AutoModelForSequenceClassification, name_or_path, what="the teacher", cache_dir=cache_dir,
                           trust_remote_code=trust_remote_code, complete=True,
                           fix="pass a model dir fine-tuned on the task")


def load_source_config(name_or_path: str, cache_dir: str | None = None, trust_remote_code: bool = False):
    return _load("a model config", AutoConfig.from_pretrained, name_or_path,
                 "pass a local model dir or a Hub id (online)", cache_dir=cache_dir,
                 trust_remote_code=trust_remote_code)


def _layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer's stack of blocks: the ModuleList with num_hidden_layers entries."""
    n = model.config.num_hidden_layers
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if len(found) != 1:
        raise UsageError(f"cannot find the layer stack of {type(model).__name__} (found {len(found)} "
                         f"candidate lists of {n} modules); --num_layers/--student_layers support BERT-like models")
    return found[0]


def set_layers(config, layer_ids: list[int]) -> None:
    """`config` describes the model made of `layer_ids` of its layers: the layer count, and every per-layer list
    (`layer_types`: Gemma 2's, Qwen 2's or ModernBERT's sliding or full attention per layer) cut the same way, so
    that each kept layer keeps its own kind."""
    n = config.num_hidden_layers
    for name in ("layer_types",):
        values = getattr(config, name, None)
        if isinstance(values, (list, tuple)) and len(values) == n:
            setattr(config, name, [values[i] for i in layer_ids])
    config.num_hidden_layers = len(layer_ids)


def keep_layers(model: PreTrainedModel, layer_ids: list[int]) -> PreTrainedModel:
    """A new model of the same class made of `layer_ids` of `model` (in that order) plus everything
    outside the layer stack (embeddings, pooler, head): DistilBERT's student initialisation."""
    n_source = model.config.num_hidden_layers
    if max(layer_ids) >= n_source:
        raise UsageError(f"layer {max(layer_ids)} requested but the source model has {n_source} layers "
                         f"(ids 0..{n_source - 1}); fix --student_layers/--num_layers")
    stack_name, _ = _layer_list(model)
    config = model.config.__class__.from_dict(model.config.to_dict())
    set_layers(config, layer_ids)
    student = model.__class__(config)
    prefix = stack_name + "."
    new_state = {}
    for key, value in model.state_dict().items():
        if key.startswith(prefix):
            layer, rest = key[len(prefix):].split(".", 1)
            if int(layer) in layer_ids:
                new_state[f"{prefix}{layer_ids.index(int(layer))}.{rest}"] = value
        else:
            new_state[key] = value
    student.load_state_dict(new_state, strict=True)
    return student


def forward_input_names(model: nn.Module) -> set[str]:
    """The batch keys a model's forward accepts (DistilBERT takes no token_type_ids, BERT does). A
    wrapper whose forward takes **inputs declares its model's in `accepted_inputs`."""
    module = getattr(model, "module", model)  # DDP
    declared = getattr(module, "accepted_inputs", None)
    return set(declared) if declared is not None else set(inspect.signature(module.forward).parameters)


def model_inputs(batch: dict[str, torch.Tensor], accepted: set[str]) -> dict[str, torch.Tensor]:
    """The model's own inputs from a batch that carries every model's inputs plus labels/ids."""
    return {k: v for k, v in batch.items() if k in accepted and k not in ("labels", "example_id")}


def check_same_vocabulary(student_tokenizer, teacher_tokenizer, teacher_path: str) -> None:
    """Teacher and student read the same input ids, so their tokenizers must agree exactly."""
    s_ids = student_tokenizer(PROBE_TEXT)["input_ids"]
    t_ids = teacher_tokenizer(PROBE_TEXT)["input_ids"]
    if len(student_tokenizer) != len(teacher_tokenizer) or s_ids != t_ids:
        raise UsageError(
            f"teacher {teacher_path!r} and the student use different vocabularies (sizes "
            f"{len(teacher_tokenizer)} vs {len(student_tokenizer)}, probe ids differ: {s_ids != t_ids}); "
            "distil between models that share a tokenizer, or pass --tokenizer_name of the teacher")


TEACHER_ORDER_FIX = ("fine-tune the teacher with this toolkit (canonical order) or start the student from a checkpoint "
                     "with the teacher's order")


def check_teacher_labels(teacher: PreTrainedModel, student_order: list[str], num_labels: int,
                         teacher_path: str, fix: str = TEACHER_ORDER_FIX, task_labels=None) -> None:
    """KD compares logit j with logit j: the teacher's head must have the student's label order, its
    names compared by meaning (label_meaning; ids as the `task_labels` of those ids); generic names are
    assumed to have it."""
    if teacher.config.num_labels != num_labels:
        raise UsageError(f"teacher {teacher_path!r} has {teacher.config.num_labels} outputs but the task has "
                         f"{num_labels}; use a teacher fine-tuned on this task")
    names = model_label_names(teacher.config)
    if names is None and task_labels and num_labels > 1 and list(student_order) != list(task_labels):
        # ids at their own rows (LABEL_0, "0", ...) mean the task's order, as they do for the student
        raise UsageError(f"teacher {teacher_path!r} has generic label names, i.e. the task's order "
                         f"{list(task_labels)}, but the student's is {list(student_order)}; {fix}")
    if names is None:
        logger.warning("teacher %s has generic label names; assuming its label order is %s",
                       teacher_path, student_order)
    elif num_labels > 1 and match_labels(ids_as_task_labels(names, task_labels or student_order),
                                         student_order) != list(student_order):
        raise UsageError(f"teacher {teacher_path!r} label order {names} differs from the student's "
                         f"{list(student_order)}; {fix}")


TEACHER_TOKENIZER_FIX = ("the teacher's tokenizer is needed to check that it shares the student's vocabulary: save "
                         "it into the teacher's dir (tokenizer.save_pretrained)")


def load_teacher_tokenizer(path: str, cache_dir: str | None = None, trust_remote_code: bool = False):
    return load_tokenizer(path, cache_dir, trust_remote_code, fix=TEACHER_TOKENIZER_FIX)


def load_checked_teacher(path: str, student_tokenizer, student_label_order: list[str], num_labels: int,
                         max_seq_length: int, cache_dir: str | None = None, trust_remote_code: bool = False,
                         order_fix: str = TEACHER_ORDER_FIX, task_labels=None):
    """The teacher, after every pairing check with the student: outputs and label order (`order_fix`:
    what to do about another order; `task_labels`: the task's canonical order, which ids name),
    vocabulary, and room for max_seq_length positions."""
    teacher = load_teacher(path, cache_dir, trust_remote_code)
    check_teacher_labels(teacher, student_label_order, num_labels, path, order_fix, task_labels)
    check_same_vocabulary(student_tokenizer, load_teacher_tokenizer(path, cache_dir, trust_remote_code), path)
    check_vocab_fits(teacher, student_tokenizer, "teacher")
    check_max_length(teacher, max_seq_length, "teacher")
    return teacher


def load_trainable_teacher(path: str, student_tokenizer, student_label_order: list[str],
                           task_labels: tuple[str, ...], max_seq_length: int, cache_dir: str | None = None,
                           trust_remote_code: bool = False):
    """A teacher that will learn (ProKT, LGTM): like the student, a pretrained model gets a new head for
    the task's labels; a fine-tuned one keeps its head, which must use the student's label order. A head
    without the task's names learns in the student's order (it is trained on the student's label ids)."""
    teacher, order = load_classifier(path, task_labels, cache_dir=cache_dir, trust_remote_code=trust_remote_code,
                                     what="the teacher", default_order=student_label_order)
    if list(order) != list(student_label_order):
        raise UsageError(f"teacher {path!r} label order {saved_label_names(path, cache_dir, trust_remote_code)} "
                         f"differs from the student's {list(student_label_order)}; start both from checkpoints with "
                         "the same order")
    check_same_vocabulary(student_tokenizer, load_teacher_tokenizer(path, cache_dir, trust_remote_code), path)
    check_vocab_fits(teacher, student_tokenizer, "teacher")
    check_max_length(teacher, max_seq_length, "teacher")
    return teacher


def check_max_length(model: PreTrainedModel, max_seq_length: int, which: str) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_seq_length > limit:
        raise UsageError(f"--max_seq_length {max_seq_length} exceeds the {which}'s {limit} positions; "
                         f"pass --max_seq_length {limit} or less")


def load_pretrained(auto_class, name_or_path: str, *, what: str = "model weights", cache_dir: str | None = None,
                    trust_remote_code: bool = False, layer_ids: list[int] | None = None, complete: bool = False,
                    fix: str = "pass a local model dir or a Hub id (online)", **kwargs):
    """`auto_class.from_pretrained` with our one-line error, optionally cut down to `layer_ids`
    (for task heads other than sequence classification: question answering, masked/causal LM).
    Classification and QA heads need an encoder (check_encoder); `complete` (a frozen teacher): every
    weight must come from the checkpoint (check_complete)."""
    if auto_class in ENCODER_HEADS:  # from the config alone: a decoder-only LLM is refused before its weights load
        config = load_source_config(name_or_path, cache_dir, trust_remote_code)
        check_encoder(config, name_or_path, what,
                      f"pass {EXPECTED_CHECKPOINT[auto_class][1]} (BERT-like)" if complete else ENCODER_FIX)
    loading = {}

    def loader(path, **kw):
        model, info = auto_class.from_pretrained(path, output_loading_info=True, **kw)
        loading.update(info)
        return model

    model = _load(what, loader, name_or_path, fix, check_weights=True, cache_dir=cache_dir,
                  trust_remote_code=trust_remote_code, **kwargs)
    if complete:
        check_complete(model, loading.get("missing_keys"), auto_class, name_or_path, what)
    return keep_layers(model, layer_ids) if layer_ids is not None else model


def check_model_type(model: PreTrainedModel, expected: str | None, flag: str) -> None:
    """The original scripts' --model_type/--teacher_type: a check here (the architecture comes from the
    checkpoint's config), so a command meant for another model fails instead of running on the wrong one."""
    def key(name: str) -> str:  # the old scripts' class keys spell some types without '-' (xlmroberta)
        return re.sub(r"[^a-z0-9]", "", name.lower())
    if expected and key(model.config.model_type) != key(expected):
        raise UsageError(f"{flag} {expected} but the checkpoint is a {model.config.model_type!r} model; fix {flag} "
                         "or the model path")
    if expected:
        logger.info("%s %s: checked; the model class comes from the checkpoint's config", flag, expected)


def check_lower_case(tokenizer, do_lower_case: bool) -> None:
    """--do_lower_case of the original scripts: the tokenizer must lower-case (it is part of the
    tokenizer's own config now); an uncased model given cased text would see [UNK]s."""
    # a word of its own vocabulary (an unknown probe would be [UNK] in either case)
    word = next((t for t in tokenizer.get_vocab() if t.isalpha() and t.islower() and len(t) >= 3), "abc")
    if do_lower_case and tokenizer(word.upper())["input_ids"] != tokenizer(word)["input_ids"]:
        raise UsageError("--do_lower_case but the tokenizer is cased; use an uncased model (or its tokenizer via "
                         "--tokenizer_name), or drop --do_lower_case")
