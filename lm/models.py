"""Teacher and student LMs for train_lm_distill.py.

The student is, in order of precedence: a pretrained model (--student_name_or_path); a model built
from --student_config (random init, optionally --student_pretrained_weights); or a copy of the
teacher cut down to --student_layers. With --student_layers the listed layers come from the teacher
(from the pretrained student when one is given), with the embeddings and the LM head: DistilBERT's
initialisation. A DistilBERT student of a BERT teacher is converted exactly (bert_to_distilbert).

The teacher is a pretrained model, or (--teacher_pretrained, as the DistilBERT pipeline loaded it) the
architecture of --teacher_name holding the weights of a state-dict file. Such files, the student's
--student_pretrained_weights too, go through one loader: tensors only (no file a user hands over runs
code) and every weight of the model from the file.
"""
from __future__ import annotations

import inspect
import logging
import os
import pickle
import re

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from distill.errors import UsageError
from distill.model_files import has_tokenizer_files
from distill.modeling import (
    check_max_length,
    check_same_vocabulary,
    check_vocab_fits,
    keep_layers,
    load_pretrained,
    load_source_config,
    load_teacher_tokenizer,
    load_tokenizer,
    set_layers,
)
from distill.run_dir import inside
from distill.text_files import json_type, parse_json, read_text
from lm.output_layer import EmittingLinear, logits_come_from_output_layer

logger = logging.getLogger(__name__)


def lm_class(mlm: bool):
    return AutoModelForMaskedLM if mlm else AutoModelForCausalLM


def fused_output_layer_applies(loss_args, train_args, mlm: bool, student, teacher) -> bool:
    """Whether the LM loss projects what the output layers read itself (lm/objective.fuse_output_layers, the
    models' side in lm/output_layer.py): asked for (--fused_output_layer, the default), and every model whose
    output layer the loss uses has an nn.Linear output layer whose output the model's logits are, untouched
    (`logits_come_from_output_layer`; a masked LM's a plain nn.Linear, which is made to emit its input; a
    causal LM's forward must take `logits_to_keep`).

    `teacher`: the teacher whose outputs the loss reads (None: none). A teacher-output cache
    (--cache_teacher_outputs) with --teacher_cache_top_k feeds the loss its stored top-k ids and
    log-probabilities (the teacher's output layer is not used); a full-logit cache stores (B, T, V) logits,
    which only the chunked path reads: not fused. (No cache with --mlm: refused before.) Under --fsdp too: the
    student's root unit stays gathered until its backward, and the teacher's output weight is gathered for the
    loss (lm/objective.py)."""
    if not loss_args.fused_output_layer:
        return False

    def not_fused(why: str) -> bool:  # (said in the log: the run scores the models' full logits instead)
        logger.info("fused output layers: not used, %s; the loss scores the models' logits chunk by chunk", why)
        return False
    if train_args.cache_teacher_outputs:
        if train_args.teacher_cache_top_k is None:
            return not_fused("the teacher-output cache stores full logits (--teacher_cache_top_k stores what the "
                             "fused loss reads)")
        teacher = None  # the cache stands in for the teacher's output layer
    models = [m for m in (student, teacher) if m is not None]
    for model in models:
        name = type(model).__name__
        layer = model.get_output_embeddings()
        if not isinstance(layer, nn.Linear) or (mlm and type(layer) not in (nn.Linear, EmittingLinear)):
            return not_fused(f"{name}'s output layer is a {type(layer).__name__}, not a plain nn.Linear")
        if not mlm and "logits_to_keep" not in inspect.signature(model.forward).parameters:
            return not_fused(f"{name}'s forward takes no logits_to_keep")
        if not logits_come_from_output_layer(model, mlm):
            return not_fused(f"{name}'s logits are not its output layer's output as it is (e.g. soft-capped or "
                             "scaled after it)")
    return True


def check_teacher_pretrained(args, output_dir: str) -> None:
    """--teacher_pretrained needs the architecture --teacher_name gives, and must outlive the run: in the
    output dir it could be overwritten (checkpoint.pth) or removed (a fresh start), and a resumed run
    would then read another teacher."""
    if args.teacher_pretrained is None:
        return
    if args.teacher_model is None:
        raise UsageError(f"--teacher_pretrained {args.teacher_pretrained} holds weights only: pass --teacher_name "
                         "too, the model (dir or Hub id) whose config and tokenizer they belong to")
    if inside(args.teacher_pretrained, output_dir):
        raise UsageError(f"--teacher_pretrained {args.teacher_pretrained} is in the output dir {output_dir}, which "
                         "this run writes over; copy it elsewhere first, or choose another --dump_path/--output_dir")


def load_teacher(args, mlm: bool) -> PreTrainedModel:
    """The teacher, used as saved: a checkpoint without this LM head (a classifier, or a causal LM loaded
    for --mlm) would get a random one, so it is refused (complete=True; load_weights: every weight)."""
    load = dict(cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code)
    if args.teacher_pretrained is None:
        return load_pretrained(lm_class(mlm), args.teacher_model, what="the teacher", complete=True, **load)
    source = f"--teacher_name {args.teacher_model}"
    teacher = _from_config(lm_class(mlm), load_source_config(args.teacher_model, **load), source,
                           "pass the teacher's model dir or Hub id (its config.json gives the architecture)")
    load_weights(teacher, args.teacher_pretrained, "--teacher_pretrained", source,
                 "pass the weights of a model of that architecture and size, or the --teacher_name they were "
                 "trained from")
    return teacher.eval()


def check_tokenizers(tokenizer, tokenizer_path: str, args) -> None:
    """The run's tokenizer (`tokenizer`, from `tokenizer_path`: --tokenizer_name, else the teacher's, else
    the student's) writes the ids both models read, so the teacher's own tokenizer must agree with it, and
    so must a pretrained student's own (when its dir has one). A student built from --student_config
    learns the run's ids: nothing to compare. The teacher's dir must hold its tokenizer (a teacher from
    --teacher_pretrained: --teacher_name's), else nothing says which ids it was trained on."""
    load = dict(cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code)
    source = (f"--tokenizer_name {tokenizer_path!r}" if args.tokenizer_name else
              f"the teacher {tokenizer_path!r}'s tokenizer" if tokenizer_path == args.teacher_model else
              f"the student {tokenizer_path!r}'s tokenizer")
    models = []
    if args.teacher_model and not same_place(args.teacher_model, tokenizer_path):
        models.append(("teacher", args.teacher_model, load_teacher_tokenizer(args.teacher_model, **load)))
    student = args.model_name_or_path
    if student and not same_place(student, tokenizer_path):
        if os.path.isdir(student) and not has_tokenizer_files(student):
            logger.info("the student %s holds no tokenizer of its own: it reads %s", student, source)
        else:
            models.append(("student", student, load_tokenizer(student, **load)))
    for role, path, own in models:
        try:
            check_same_vocabulary(tokenizer, own, path)
        except UsageError:
            detail = (f"{len(own)} tokens each, other ids" if len(own) == len(tokenizer) else
                      f"{len(own)} vs {len(tokenizer)} tokens")
            raise UsageError(
                f"the {role} {path!r} and {source} have different vocabularies ({detail}): the {role} was "
                f"trained on its own tokenizer's ids, and both models read the run's; pass --tokenizer_name {path} "
                f"(the {role}'s tokenizer), or distil between models that share one"
            ) from None


def same_place(a: str, b: str) -> bool:
    """Whether two model dirs / Hub ids name the same thing (the same dir spelt two ways, too)."""
    if os.path.isdir(a) and os.path.isdir(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return a == b


GENERIC_CONFIG_FIELDS = {"bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings"}


def student_config(path: str, student_type: str | None, cache_dir=None, trust_remote_code=False):
    """A config from a model dir/Hub id, or from a json file; the original pipeline's json files carry
    no model_type, which --student_type then gives."""
    if not path.endswith(".json"):
        return load_source_config(path, cache_dir, trust_remote_code)
    if os.path.isdir(path):
        raise UsageError(f"--student_config {path} is a folder; pass the config .json inside it, or the model dir "
                         "without .json in its name")
    text = read_text(path, not_found=f"--student_config {path} not found; pass a config .json or a model dir")
    values = parse_json(text, f"--student_config {path}", "pass a model config .json (e.g. a model dir's config.json)")
    if not isinstance(values, dict):
        raise UsageError(f"--student_config {path} holds {json_type(values)}, not a config object; pass "
                         "a model config .json (e.g. a model dir's config.json)")
    model_type = values.pop("model_type", None) or student_type
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise UsageError(f"--student_config {path} names no known model_type ({model_type!r}); add --student_type "
                         "(distilbert, bert, roberta, gpt2, llama, ...)")
    config_class = CONFIG_MAPPING[model_type]
    # The fields that make this architecture what it is (sizes, layers, vocabulary): a JSON setting none
    # of them (e.g. a tokenizer_config.json) would silently build the default, full-size model.
    own = set(config_class().to_dict()) - set(PretrainedConfig().to_dict()) - GENERIC_CONFIG_FIELDS
    if not set(values) & own:
        raise UsageError(f"--student_config {path} sets none of a {model_type} config's fields (found "
                         f"{sorted(values)[:5]}); pass the model's config.json")
    try:
        return config_class(**values)
    except Exception as e:
        raise UsageError(f"--student_config {path} is not a valid {model_type} config ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:160]}); fix the file") from None


def _from_config(auto, config, source: str, fix: str = "fix the config's values") -> PreTrainedModel:
    """A randomly initialised model; a config whose values cannot make one (a string where a size goes,
    heads that do not divide the hidden size, an architecture without this LM head) is refused naming
    its `source` flag and file."""
    try:
        return auto.from_config(config)
    except Exception as e:
        raise UsageError(f"{source} cannot build a model ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:160]}); {fix}") from None


def build_student(args, teacher: PreTrainedModel | None, mlm: bool, layer_ids: list[int] | None,
                  seed: int) -> PreTrainedModel:
    auto = lm_class(mlm)
    if args.model_name_or_path:
        return load_pretrained(auto, args.model_name_or_path, what="the student", cache_dir=args.cache_dir,
                               trust_remote_code=args.trust_remote_code, layer_ids=layer_ids)
    if args.student_config:
        config = student_config(args.student_config, args.student_type, args.cache_dir, args.trust_remote_code)
        if layer_ids is not None and max(layer_ids) < config.num_hidden_layers:
            set_layers(config, layer_ids)  # (a config of the teacher's size, cut like the teacher)
        elif layer_ids is not None:
            config.num_hidden_layers = len(layer_ids)
        torch.manual_seed(seed)
        student = _from_config(auto, config, f"--student_config {args.student_config}")
        if layer_ids is not None:
            copy_teacher_layers(student, teacher, layer_ids)
        if args.student_pretrained_weights:
            load_weights(student, args.student_pretrained_weights, "--student_pretrained_weights", "--student_config",
                         "pass weights of that architecture and size")
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


# In a dir: a Hugging Face model's weights, else the DistilBERT pipeline's latest checkpoint.
DIR_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "checkpoint.pth")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def load_weights(model: PreTrainedModel, path: str, flag: str, target: str, fix: str) -> None:
    """Load the state dict of `path` (a file, or a dir holding one) into `model`, every weight of which
    must come from it; `target` names where the model's architecture came from, `fix` what to do."""
    file = weights_file(path, flag)
    state = read_state_dict(file, flag)
    if all(k.startswith("module.") for k in state):  # saved from a DDP/DataParallel wrapper: the same weights
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    # Keys a checkpoint may lack or carry without harm: buffers (recomputed from the config, e.g. position
    # ids), weights tied to a loaded one (a decoder sharing the embeddings), and those the model class
    # declares ignorable (old GPT-2 files' attention masks).
    buffers = {name for name, _ in model.named_buffers()}
    ignorable = [re.compile(p) for p in getattr(model, "_keys_to_ignore_on_load_unexpected", None) or []]
    loaded = {own[k].data_ptr() for k in state if k in own}
    missing = [k for k in own if k not in state and k not in buffers and own[k].data_ptr() not in loaded]
    unexpected = [k for k in state if k not in own and k not in buffers and not any(p.search(k) for p in ignorable)]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in state
              if k in own and state[k].shape != own[k].shape]
    problems = [f"{what} {keys[:3]}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
                for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes)) if keys]
    if problems:
        raise UsageError(f"{flag} {file} does not fit {target} ({'; '.join(problems)}); {fix}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def weights_file(path: str, flag: str) -> str:
    """The state-dict file `path` names: itself, or in a dir (see DIR_WEIGHTS) the only weights file."""
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path} not found; pass a state-dict file (.pth/.bin/.safetensors) or a dir holding "
                         "one")
    if not os.path.isdir(path):
        return path
    for name in DIR_WEIGHTS:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    found = sorted(n for n in os.listdir(path) if n.endswith(WEIGHT_SUFFIXES))
    if len(found) == 1:
        return os.path.join(path, found[0])
    raise UsageError(f"{flag} {path} holds {len(found) or 'no'} weights files {found[:4] if found else ''}; pass the "
                     "state-dict file itself (a sharded model dir loads as a model path, not through this flag)")


def read_state_dict(file: str, flag: str) -> dict[str, torch.Tensor]:
    """name -> tensor of a .safetensors file or a torch file read with weights_only: a pickled object
    other than tensors and containers (a whole pickled model, a pickle that runs code) is refused."""
    try:
        if file.endswith(".safetensors"):
            from safetensors.torch import load_file
            state = load_file(file)
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise UsageError(f"{flag} {file} is not a readable weights file (UnpicklingError: "
                             f"{(str(e).splitlines() or [''])[0][:120]}); pass a whole .safetensors or state-dict "
                             "file") from None
        raise UsageError(f"{flag} {file} holds pickled Python objects other than tensors (a whole pickled model?), "
                         "which could run code when loaded: refused; save the weights alone, with "
                         "torch.save(model.state_dict(), path) or save_pretrained") from None
    except Exception as e:  # truncated or garbage files: SafetensorError, RuntimeError, EOFError, ...
        raise UsageError(f"{flag} {file} is not a readable weights file ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0][:120]}); pass a whole .safetensors or state-dict "
                         "file") from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise UsageError(f"{flag} {file} holds no state dict (name -> tensor); pass a model's weights "
                         "(torch.save(model.state_dict(), path) or save_pretrained)")
    return state


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
        check_vocab_fits(model, vocab_size, which)
    if uses_hidden_states and student.config.hidden_size != teacher.config.hidden_size:
        raise UsageError(f"--alpha_cos compares hidden states, but the student's size {student.config.hidden_size} "
                         f"differs from the teacher's {teacher.config.hidden_size}; drop --alpha_cos")

