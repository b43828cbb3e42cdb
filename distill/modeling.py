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
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from distill.errors import UsageError

logger = logging.getLogger(__name__)

PROBE_TEXT = "The quick brown fox jumps over the lazy dog; distillation costs 42.5%, naïvely."
_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


def _load(what: str, loader, name_or_path: str, fix: str, **kwargs):
    """`loader(name_or_path, **kwargs)`; any failure (missing dir, Hub offline, corrupt files) becomes
    one UsageError line naming what could not be loaded, from where, why, and the fix."""
    if (os.path.isabs(name_or_path) or name_or_path.startswith(".")) and not os.path.exists(name_or_path):
        raise UsageError(f"could not load {what}: {name_or_path} does not exist; {fix}")
    try:
        loaded = loader(name_or_path, **kwargs)
    except Exception as e:
        reason = (str(e).splitlines() or [""])[0][:200]
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


def load_tokenizer(name_or_path: str, cache_dir: str | None = None, trust_remote_code: bool = False):
    return _load("a tokenizer", AutoTokenizer.from_pretrained, name_or_path,
                 "pass a model dir with tokenizer files, a Hub id (online), or --tokenizer_name",
                 cache_dir=cache_dir, trust_remote_code=trust_remote_code)


def model_label_names(config) -> list[str] | None:
    """The checkpoint's label names in id order, or None when they are generic (LABEL_0, ...)."""
    names = [config.id2label[i] for i in sorted(config.id2label)] if config.id2label else []
    if not names or all(_GENERIC_LABEL.match(str(n)) for n in names):
        return None
    return [str(n).lower() for n in names]


def resolve_label_order(config, task_labels: tuple[str, ...]) -> list[str]:
    """The label order this run uses for the student: the checkpoint's own order when it names the
    task's labels (e.g. an MNLI hub checkpoint with another order), else the task's canonical order."""
    names = model_label_names(config)
    if names and len(names) == len(task_labels) and set(names) == set(task_labels):
        return names
    if names and len(names) == len(task_labels):
        logger.warning("checkpoint labels %s are not the task's %s; the head is re-labelled to the task's order",
                       names, list(task_labels))
    return list(task_labels)


def load_classifier(name_or_path: str, task_labels: tuple[str, ...], *, config_name: str | None = None,
                    cache_dir: str | None = None, trust_remote_code: bool = False,
                    layer_ids: list[int] | None = None) -> tuple[PreTrainedModel, list[str]]:
    """The student: a sequence classifier for the task's labels (one output when there are none:
    regression), optionally cut down to the listed layers. Returns it with its label order
    (see resolve_label_order)."""
    config = load_source_config(config_name or name_or_path, cache_dir, trust_remote_code)
    label_order = resolve_label_order(config, task_labels) if task_labels else []
    num_labels = len(task_labels) or 1
    config.num_labels = num_labels
    if label_order:
        config.id2label = dict(enumerate(label_order))
        config.label2id = {name: i for i, name in enumerate(label_order)}
    config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    # ignore_mismatched_sizes: a head of another size (e.g. MNLI's 3 labels for a 2-label task) is re-made.
    model = _load("model weights", AutoModelForSequenceClassification.from_pretrained, name_or_path,
                  "pass a local model dir or a Hub id (online)", config=config, cache_dir=cache_dir,
                  trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True)
    if layer_ids is not None:
        model = keep_layers(model, layer_ids)
    return model, label_order


def load_teacher(name_or_path: str, cache_dir: str | None = None, trust_remote_code: bool = False) -> PreTrainedModel:
    """The teacher exactly as saved: its head is never resized or re-initialised (a head that does
    not fit the task is refused by check_teacher_labels instead)."""
    return _load("the teacher", AutoModelForSequenceClassification.from_pretrained, name_or_path,
                 "pass a model dir fine-tuned on the task", cache_dir=cache_dir, trust_remote_code=trust_remote_code)


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


def keep_layers(model: PreTrainedModel, layer_ids: list[int]) -> PreTrainedModel:
    """A new model of the same class made of `layer_ids` of `model` (in that order) plus everything
    outside the layer stack (embeddings, pooler, head): DistilBERT's student initialisation."""
    n_source = model.config.num_hidden_layers
    if max(layer_ids) >= n_source:
        raise UsageError(f"layer {max(layer_ids)} requested but the source model has {n_source} layers "
                         f"(ids 0..{n_source - 1}); fix --student_layers/--num_layers")
    stack_name, _ = _layer_list(model)
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.num_hidden_layers = len(layer_ids)
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


def check_teacher_labels(teacher: PreTrainedModel, student_order: list[str], num_labels: int,
                         teacher_path: str) -> None:
    """KD compares logit j with logit j: the teacher's head must have the student's label order."""
    if teacher.config.num_labels != num_labels:
        raise UsageError(f"teacher {teacher_path!r} has {teacher.config.num_labels} outputs but the task has "
                         f"{num_labels}; use a teacher fine-tuned on this task")
    names = model_label_names(teacher.config)
    if names is None:
        logger.warning("teacher %s has generic label names; assuming its label order is %s",
                       teacher_path, student_order)
    elif num_labels > 1 and names != list(student_order):
        raise UsageError(f"teacher {teacher_path!r} label order {names} differs from the student's "
                         f"{list(student_order)}; fine-tune the teacher with this toolkit (canonical order) "
                         "or start the student from a checkpoint with the teacher's order")


def load_checked_teacher(path: str, student_tokenizer, student_label_order: list[str], num_labels: int,
                         max_seq_length: int, cache_dir: str | None = None, trust_remote_code: bool = False):
    """The teacher, after every pairing check with the student: outputs and label order,
    vocabulary, and room for max_seq_length positions."""
    teacher = load_teacher(path, cache_dir, trust_remote_code)
    check_teacher_labels(teacher, student_label_order, num_labels, path)
    check_same_vocabulary(student_tokenizer, load_tokenizer(path, cache_dir, trust_remote_code), path)
    check_max_length(teacher, max_seq_length, "teacher")
    return teacher


def load_trainable_teacher(path: str, student_tokenizer, student_label_order: list[str],
                           task_labels: tuple[str, ...], max_seq_length: int, cache_dir: str | None = None,
                           trust_remote_code: bool = False):
    """A teacher that will learn (ProKT, LGTM): like the student, a pretrained model gets a new head for
    the task's labels; a fine-tuned one keeps its head, which must use the student's label order."""
    teacher, order = load_classifier(path, task_labels, cache_dir=cache_dir, trust_remote_code=trust_remote_code)
    if list(order) != list(student_label_order):
        raise UsageError(f"teacher {path!r} label order {order} differs from the student's "
                         f"{list(student_label_order)}; start both from checkpoints with the same order")
    check_same_vocabulary(student_tokenizer, load_tokenizer(path, cache_dir, trust_remote_code), path)
    check_max_length(teacher, max_seq_length, "teacher")
    return teacher


def check_max_length(model: PreTrainedModel, max_seq_length: int, which: str) -> None:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_seq_length > limit:
        raise UsageError(f"--max_seq_length {max_seq_length} exceeds the {which}'s {limit} positions; "
                         f"pass --max_seq_length {limit} or less")


def load_pretrained(auto_class, name_or_path: str, *, what: str = "model weights", cache_dir: str | None = None,
                    trust_remote_code: bool = False, layer_ids: list[int] | None = None, **kwargs):
    """`auto_class.from_pretrained` with our one-line error, optionally cut down to `layer_ids`
    (for task heads other than sequence classification: question answering, masked/causal LM)."""
    model = _load(what, auto_class.from_pretrained, name_or_path, "pass a local model dir or a Hub id (online)",
                  cache_dir=cache_dir, trust_remote_code=trust_remote_code, **kwargs)
    return keep_layers(model, layer_ids) if layer_ids is not None else model


def check_model_type(model: PreTrainedModel, expected: str | None, flag: str) -> None:
    """The original scripts' --model_type/--teacher_type: a check here (the architecture comes from the
    checkpoint's config), so a command meant for another model fails instead of running on the wrong one."""
    if expected and model.config.model_type != expected.lower():
        raise UsageError(f"{flag} {expected} but the checkpoint is a {model.config.model_type!r} model; fix {flag} "
                         "or the model path")


def check_lower_case(tokenizer, do_lower_case: bool) -> None:
    """--do_lower_case of the original scripts: the tokenizer must lower-case (it is part of the
    tokenizer's own config now); an uncased model given cased text would see [UNK]s."""
    if do_lower_case and tokenizer("ABC Def")["input_ids"] != tokenizer("abc def")["input_ids"]:
        raise UsageError("--do_lower_case but the tokenizer is cased; use an uncased model (or its tokenizer via "
                         "--tokenizer_name), or drop --do_lower_case")
