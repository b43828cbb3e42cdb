"""Teacher and student LMs for train_lm_distill.py.

The student is, in order of precedence: a pretrained model (--student_name_or_path); a model built
from --student_config (random init, optionally --student_pretrained_weights); or a copy of the
teacher cut down to --student_layers. With --student_layers the listed layers come from the teacher
(from the pretrained student when one is given), with the embeddings and the LM head: DistilBERT's
initialisation. A DistilBERT student of a BERT teacher is converted exactly (bert_to_distilbert).
"""
from __future__ import annotations

import json
import logging
import os

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from distill.errors import UsageError
from distill.modeling import check_max_length, keep_layers, load_pretrained

logger = logging.getLogger(__name__)


def lm_class(mlm: bool):
    return AutoModelForMaskedLM if mlm else AutoModelForCausalLM


def load_lm(path: str, mlm: bool, what: str, cache_dir=None, trust_remote_code=False) -> PreTrainedModel:
    return load_pretrained(lm_class(mlm), path, what=what, cache_dir=cache_dir, trust_remote_code=trust_remote_code)


def student_config(path: str, student_type: str | None, cache_dir=None, trust_remote_code=False):
    """A config from a model dir/Hub id, or from a json file; the original pipeline's json files carry
    no model_type, which --student_type then gives."""
    if not path.endswith(".json"):
        return AutoConfig.from_pretrained(path, cache_dir=cache_dir, trust_remote_code=trust_remote_code)
    if not os.path.isfile(path):
        raise UsageError(f"--student_config {path} not found; pass a config .json or a model dir")
    with open(path, encoding="utf-8") as f:
        values = json.load(f)
    model_type = values.pop("model_type", None) or student_type
    if model_type not in CONFIG_MAPPING:
        raise UsageError(f"--student_config {path} names no known model_type ({model_type!r}); add --student_type "
                         "(distilbert, bert, roberta, gpt2, llama, ...)")
    return CONFIG_MAPPING[model_type](**values)


def build_student(args, teacher: PreTrainedModel | None, mlm: bool, layer_ids: list[int] | None,
                  seed: int) -> PreTrainedModel:
    auto = lm_class(mlm)
    if args.model_name_or_path:
        return load_pretrained(auto, args.model_name_or_path, what="the student", cache_dir=args.cache_dir,
                               trust_remote_code=args.trust_remote_code, layer_ids=layer_ids)
    if args.student_config:
        config = student_config(args.student_config, args.student_type, args.cache_dir, args.trust_remote_code)
        if layer_ids is not None:
            config.num_hidden_layers = len(layer_ids)
        torch.manual_seed(seed)
        student = auto.from_config(config)
        if layer_ids is not None:
            copy_teacher_layers(student, teacher, layer_ids)
        if args.student_pretrained_weights:
            load_weights(student, args.student_pretrained_weights)
        return student
    if layer_ids is not None and teacher is not None:
        return keep_layers(teacher, layer_ids)
    raise UsageError("no student: pass --student_name_or_path, --student_config, or --student_layers with a teacher")


def copy_teacher_layers(student: PreTrainedModel, teacher: PreTrainedModel | None, layer_ids: list[int]) -> None:
    """Load the teacher's `layer_ids` (plus embeddings and head) into a student built from a config."""
    if teacher is None:
        raise UsageError("--student_layers copies the teacher's layers; pass --teacher_name (or drop --student_layers)")
    t_type, s_type = teacher.config.model_type, student.config.model_type
    if (t_type, s_type) == ("bert", "distilbert"):
        state = bert_to_distilbert(teacher.state_dict(), layer_ids, teacher.config)
    elif t_type == s_type:
        state = keep_layers(teacher, layer_ids).state_dict()
    else:
        raise UsageError(f"--student_layers cannot copy a {t_type} teacher's layers into a {s_type} student; use the "
                         f"same architecture (or bert -> distilbert), or drop --student_layers")
    try:
        student.load_state_dict(state, strict=True)
    except RuntimeError as e:
        reason = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise UsageError(f"--student_config does not fit the teacher's layers ({reason[:160]}); give the student the "
                         "teacher's hidden size, heads and vocabulary, or drop --student_layers") from None


def bert_to_distilbert(bert_state: dict, layer_ids: list[int], bert_config) -> dict:
    """A DistilBertForMaskedLM state from a BertForMaskedLM state, keeping `layer_ids` (in order).

    Exact: BERT adds token_type_embeddings[0] to every position (segment A, what the teacher sees
    without token_type_ids); DistilBERT has no token types, so that row is folded into its position
    embeddings and the converted model computes the same function (tested)."""
    if max(layer_ids) >= bert_config.num_hidden_layers:
        raise UsageError(f"layer {max(layer_ids)} requested but the teacher has {bert_config.num_hidden_layers} "
                         "layers; fix --student_layers")
    b = {k.removeprefix("bert."): v for k, v in bert_state.items()}
    out = {
        "distilbert.embeddings.word_embeddings.weight": b["embeddings.word_embeddings.weight"],
        "distilbert.embeddings.position_embeddings.weight":
            b["embeddings.position_embeddings.weight"] + b["embeddings.token_type_embeddings.weight"][0],
        "distilbert.embeddings.LayerNorm.weight": b["embeddings.LayerNorm.weight"],
        "distilbert.embeddings.LayerNorm.bias": b["embeddings.LayerNorm.bias"],
        "vocab_transform.weight": b["cls.predictions.transform.dense.weight"],
        "vocab_transform.bias": b["cls.predictions.transform.dense.bias"],
        "vocab_layer_norm.weight": b["cls.predictions.transform.LayerNorm.weight"],
        "vocab_layer_norm.bias": b["cls.predictions.transform.LayerNorm.bias"],
        "vocab_projector.weight": b["cls.predictions.decoder.weight"],
        "vocab_projector.bias": b["cls.predictions.bias"],
    }
    names = {"attention.q_lin": "attention.self.query", "attention.k_lin": "attention.self.key",
             "attention.v_lin": "attention.self.value", "attention.out_lin": "attention.output.dense",
             "sa_layer_norm": "attention.output.LayerNorm", "ffn.lin1": "intermediate.dense",
             "ffn.lin2": "output.dense", "output_layer_norm": "output.LayerNorm"}
    for j, i in enumerate(layer_ids):
        for d_name, b_name in names.items():
            for p in ("weight", "bias"):
                out[f"distilbert.transformer.layer.{j}.{d_name}.{p}"] = b[f"encoder.layer.{i}.{b_name}.{p}"]
    return out


def load_weights(model: PreTrainedModel, path: str) -> None:
    """--student_pretrained_weights: a model dir, or a .safetensors / torch state-dict file."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if not os.path.isfile(path):
        raise UsageError(f"--student_pretrained_weights {path} not found; pass a model dir or a state-dict file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k not in _tied_keys(model)]:
        raise UsageError(f"--student_pretrained_weights {path} does not fit --student_config (missing "
                         f"{list(missing)[:3]}, unexpected {list(unexpected)[:3]}); pass weights of that architecture")


def _tied_keys(model: PreTrainedModel) -> set[str]:
    """Keys a saved state may omit because they share storage with the input embeddings."""
    emb = model.get_input_embeddings().weight
    return {k for k, v in model.state_dict().items() if v.data_ptr() == emb.data_ptr()}


def freeze_embeddings(model: PreTrainedModel, positions: bool, token_types: bool) -> list[str]:
    """--freeze_pos_embs / --freeze_token_type_embds; returns the frozen parameter names."""
    frozen = []
    for name, param in model.named_parameters():
        if (positions and ("position_embeddings" in name or name.endswith("wpe.weight"))) or \
                (token_types and "token_type_embeddings" in name):
            param.requires_grad_(False)
            frozen.append(name)
    if (positions or token_types) and not frozen:
        raise UsageError("--freeze_pos_embs/--freeze_token_type_embds: the student has no such embeddings "
                         "(e.g. rotary positions); drop the flag")
    return frozen


def check_lm_pair(student: PreTrainedModel, teacher: PreTrainedModel | None, vocab_size: int, max_seq_length: int,
                  uses_hidden_states: bool) -> None:
    """Both models have room for the sequences and an output for every token of the tokenizer; the
    cosine term needs hidden states of one size."""
    for which, model in (("student", student), ("teacher", teacher)):
        if model is None:
            continue
        check_max_length(model, max_seq_length, which)
        if model.config.vocab_size < vocab_size:
            raise UsageError(f"the {which} has {model.config.vocab_size} output tokens but the tokenizer has "
                             f"{vocab_size}; use models and a tokenizer of the same vocabulary")
    if uses_hidden_states and student.config.hidden_size != teacher.config.hidden_size:
        raise UsageError(f"--alpha_cos compares hidden states, but the student's size {student.config.hidden_size} "
                         f"differs from the teacher's {teacher.config.hidden_size}; drop --alpha_cos")

