#!/usr/bin/env python
"""Distil a masked or causal language model (DistilBERT's pipeline and token-level divergences for
causal LMs, on the shared trainer). Without a teacher the student is trained on the LM loss alone
(this is how teachers are made).

    # DistilBERT (the original pipeline's flags are accepted: --dump_path, --data_file, --teacher_name, ...)
    python train_lm_distill.py --student_type distilbert --teacher_type bert --teacher_name <teacher> \
        --student_config <cfg> --alpha_ce 5.0 --alpha_mlm 2.0 --alpha_cos 1.0 --alpha_clm 0.0 --mlm \
        --dump_path out --data_file corpus.txt

    # --dump_path runs in that pipeline's mode (lm/pipeline.py): one sequence per line of a .txt data file,
    # and its files in the dump path (checkpoint.pth, model_epoch_<n>.pth, parameters.json, logs/, ...)
    python train_lm_distill.py --student_name distilroberta-base --teacher_name roberta-base \
        --teacher_pretrained trained_teacher.pth --alpha_ce 5.0 --alpha_mlm 2.0 --alpha_cos 1.0 --alpha_clm 0.0 \
        --mlm --dump_path output/train1 --data_file data/dump.txt --force --n_gpu 0

    # a causal LM with reverse KL, mixed 50/50 with the LM loss
    python train_lm_distill.py --teacher_name_or_path <gpt2 teacher> --student_layers 0,2,4 \
        --kd_loss reverse_kl --kd_ratio 0.5 --train_file corpus.txt --output_dir out

    # MiniLLM on prompt/response data (Dolly jsonl), with a plain-text LM term; Rouge-L on held-out prompts
    python train_lm_distill.py --method minillm --teacher_name_or_path <teacher> --model_name_or_path <sft student> \
        --train_file dolly.jsonl --lm_train_file corpus.txt --output_dir out

The loss terms are in lm/objective.py, the divergences in losses/token_kd.py, the data in lm/data.py;
MiniLLM, SeqKD and the Rouge-L evaluation in sequence_kd/. --ta_models runs any method as a teacher-assistant
chain (TAKD, takd/).
"""
from __future__ import annotations

import logging
import os
import sys

from distill.args import TrainingArguments, parse_command_line, parse_layer_ids
from distill.entry import cli_main, finish_run, start_run
from distill.errors import UsageError
from distill.modeling import check_model_type, load_tokenizer
from distill.teacher_cache import check_cache_request, make_frozen_teacher
from distill.trainer import DistillationTrainer
from lm.args import (
    LaunchArguments,
    LMDataArguments,
    LMLossArguments,
    LMModelArguments,
    original_flags_help,
    translate_original_flags,
)
from lm.build import cache_refusal, causal_lm_data, check_preprocessed_files, load_documents, masked_lm_data
from lm.models import (
    build_student,
    check_lm_pair,
    check_teacher_pretrained,
    check_tokenizers,
    freeze_embeddings,
    fused_output_layer_applies,
    load_teacher,
)
from lm.objective import LMDistillationObjective, perplexity_metrics
from lm.output_layer import fused_output_layer
from lm.pipeline import PIPELINE_SPELLING, dump_files, is_pipeline_command
from sequence_kd.args import GenerationArguments, MiniLLMArguments
from sequence_kd.build import (
    check_generation_length,
    minillm_training,
    rouge_evaluator,
    sampling_settings,
    seqkd_documents,
)
from takd.args import TAKDArguments
from takd.chain import ChainSpec, run_chain

logger = logging.getLogger("train_lm_distill")


FLAGS = (LMModelArguments, LMDataArguments, TrainingArguments, LMLossArguments, LaunchArguments, MiniLLMArguments,
         GenerationArguments, TAKDArguments)
# In a TA chain, an assistant's stage replaces the flags that define the student; --teacher_type
# describes the chain's first teacher only.
CHAIN = ChainSpec(
    student_fields=("model_name_or_path", "student_config", "student_pretrained_weights", "student_layers",
                    "student_type"),
    first_teacher_fields=("teacher_type", "teacher_pretrained"),
    refused=(("seqkd_file", "every stage's teacher writes its own responses; drop it (they are cached per teacher "
                            "in --data_cache_dir)"),))


FUSED_NOTE = ("fused output layers: the LM loss projects %s chunk by chunk, so no (batch, length, vocab) logits "
              "exist (--no_fused_output_layer: the models' logits)")


def run(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    pipeline = is_pipeline_command(argv)
    argv = translate_original_flags(argv)
    parsed = parse_command_line(FLAGS, argv, epilog=original_flags_help())
    model_args, data_args, train_args, loss_args, launch, mini, generation, takd_args = parsed
    # The DistilBERT pipeline's command just trains, on every line of its data: nothing is held out
    train_args.default_actions(evaluate=not pipeline)
    if pipeline and not train_args.do_eval and data_args.validation_file is None:
        data_args.validation_split_percentage = 0.0
    if takd_args.ta_models:  # teacher -> assistants -> student: this function once per stage
        return run_chain(run, parsed, CHAIN, spelling=PIPELINE_SPELLING if pipeline else None)
    if train_args.do_predict:
        raise UsageError("--do_predict: an LM has no test-server file; --do_eval reports held-out perplexity")
    launch.apply(train_args)
    train_args.validate()
    has_teacher = model_args.teacher_model is not None
    mini.validate(has_teacher)
    generation.validate()
    method, metric, mlm = mini.method, generation.resolved_metric(mini.method), loss_args.mlm
    if mlm and (method != "kd" or metric != "perplexity"):
        raise UsageError("--method minillm/seqkd and --eval_metric rougeL generate text: they need a causal LM "
                         "(drop --mlm)")
    # Pure SeqKD uses the teacher only to write the training responses; token-level KD on top is asked for
    # with --kd_ratio or --alpha_ce.
    if train_args.do_eval and not holds_out(data_args, metric):
        # refused before anything is written, any model loaded or the teacher answers (SeqKD)
        raise UsageError(f"--do_eval needs held-out {'text' if metric == 'perplexity' else 'prompts'}, and "
                         "--validation_split_percentage 0 holds none out: pass --validation_file or "
                         "--validation_split_percentage > 0, or drop --do_eval")
    token_kd = has_teacher and (method != "seqkd" or loss_args.kd_ratio is not None or loss_args.alpha_ce is not None)
    if method != "minillm":
        loss_args.validate(token_kd)
    weights = loss_args.weights(token_kd)
    check_cache_request(train_args, has_teacher=token_kd or method == "minillm", lm=True, refusal=cache_refusal(
        method, mlm, weights, train_args.teacher_cache_top_k))
    check_teacher_pretrained(model_args, train_args.output_dir)
    tokenizer_path = model_args.tokenizer_name or model_args.teacher_model or model_args.model_name_or_path
    dump = dump_files(train_args, tokenizer_path, parsed) if pipeline else None
    check_preprocessed_files(data_args, dump)
    # ---- one tokenizer for both models: the teacher's (and a pretrained student's) own must agree with it
    load = dict(cache_dir=model_args.cache_dir, trust_remote_code=model_args.trust_remote_code)
    if tokenizer_path is None:
        raise UsageError("no tokenizer: pass --tokenizer_name (a model dir or Hub id) for a student built from "
                         "--student_config")
    tokenizer = load_tokenizer(tokenizer_path, **load)
    check_tokenizers(tokenizer, tokenizer_path, model_args)
    start, accelerator = start_run(train_args, parsed, script=__file__,
                                   spelling=PIPELINE_SPELLING if pipeline else None)
    if dump is not None:
        start = dump.start(start, train_args)

    # ---- models: the teacher first (the student may be cut from it)
    teacher = None
    if has_teacher:
        teacher = load_teacher(model_args, mlm)
        check_model_type(teacher, model_args.teacher_type, "--teacher_type")
    student = build_student(model_args, teacher, mlm, parse_layer_ids(model_args.student_layers), train_args.seed)
    check_model_type(student, model_args.student_type, "--student_type")
    frozen = freeze_embeddings(student, model_args.freeze_pos_embs, model_args.freeze_token_type_embds)
    if frozen:
        logger.info("frozen: %s", ", ".join(frozen))
    check_lm_pair(student, teacher, len(tokenizer), data_args.max_seq_length, uses_hidden_states="cos" in weights)

    pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
    sampling = sampling_settings(generation, tokenizer, pad_id)
    if method != "kd" or metric == "rougeL":
        check_generation_length([m for m in (student, teacher) if m is not None], mini.max_prompt_length,
                                generation.max_new_tokens)
    teacher_strategy = None
    if teacher is not None:
        teacher_strategy = make_frozen_teacher(teacher, accelerator, train_args, vocab_size=len(tokenizer),
                                               temperature=loss_args.resolved_temperature())

    # ---- data and loss: MiniLLM's rollouts, or sequences (SeqKD: written by the teacher)
    source, train, val, collator = None, None, None, None
    if method == "minillm":
        source, objective = minillm_training(mini, data_args, train_args, tokenizer, teacher_strategy.model, sampling,
                                             accelerator, loss_args.kd_chunk_size, loss_args.kd_ratio)
        logger.info("MiniLLM: %d prompts, loss weights %s", len(source.prompts), objective.weights)
        if fused_output_layer_applies(loss_args, train_args, False, student, teacher):
            objective.fuse_output_layers(fused_output_layer(student, False), fused_output_layer(teacher, False))
            logger.info(FUSED_NOTE, "final hidden states")
    else:
        docs = None  # (evaluating Rouge-L alone needs the prompts only)
        if method == "seqkd":
            docs = seqkd_documents(mini, data_args, model_args, tokenizer, teacher_strategy.model, sampling,
                                   train_args.seed, mini.chunk_size)
        elif train_args.do_train or metric == "perplexity":
            docs = load_documents(data_args, tokenizer, mlm, model_args.cache_dir, dump)
        if docs is not None:
            train, val, collator = (masked_lm_data(*docs, data_args, loss_args, tokenizer, train_args.seed, dump)
                                    if mlm else causal_lm_data(*docs, data_args, pad_id, packed=dump is None))
            logger.info("%s: %d training sequences, %d held-out; loss weights %s, τ = %g, divergence %s",
                        "masked LM" if mlm else "causal LM", len(train), len(val) if val else 0, weights,
                        loss_args.resolved_temperature(), loss_args.kd_loss)
        objective = LMDistillationObjective(
            weights, mlm=mlm, vocab_size=len(tokenizer), kd_loss=loss_args.kd_loss,
            temperature=loss_args.resolved_temperature(), jsd_beta=loss_args.jsd_beta,
            skew_lambda=loss_args.skew_lambda, restrict_ce_to_mask=loss_args.restrict_ce_to_mask,
            chunk_size=loss_args.kd_chunk_size)
        kd_teacher = teacher if token_kd else None  # (SeqKD's teacher only writes the data)
        if fused_output_layer_applies(loss_args, train_args, mlm, student, kd_teacher):
            # a top-k teacher cache feeds the loss its stored rows: the teacher's output layer is not read
            topk = kd_teacher is not None and train_args.cache_teacher_outputs
            live = kd_teacher if not topk else None
            objective.fuse_output_layers(fused_output_layer(student, mlm),
                                         fused_output_layer(live, mlm) if live is not None else None,
                                         teacher_topk=topk)
            logger.info(FUSED_NOTE, "the output layers' inputs" if mlm else "final hidden states")
    evaluator = None
    if metric == "rougeL" and train_args.do_eval:  # (training alone needs no held-out prompts)
        evaluator = rouge_evaluator(mini, data_args, generation, tokenizer, sampling,
                                    train_args.per_device_eval_batch_size, show_progress=not train_args.disable_tqdm)
    elif train_args.do_eval and val is None:
        raise UsageError("--do_eval needs held-out text: pass --validation_file or --validation_split_percentage > 0")

    # ---- trainer
    os.makedirs(train_args.output_dir, exist_ok=True)
    trainer = DistillationTrainer(
        args=train_args, accelerator=accelerator, student=student, objective=objective, collator=collator,
        train_dataset=train if train_args.do_train else None,
        eval_datasets={"": val} if train_args.do_eval and val is not None else {},
        teacher=teacher_strategy if (token_kd or method == "minillm") else None,
        compute_metrics=perplexity_metrics, main_metric=metric, greater_is_better=metric != "perplexity",
        tokenizer=tokenizer, group_by_length=data_args.group_by_length, batch_source=source,
        evaluator=evaluator if train_args.do_eval else None,
        on_save=dump.on_save if dump is not None else None)

    def save_final() -> None:  # the DistilBERT pipeline's own copy of the final model
        plain = trainer.plain_student()  # (every process: under --fsdp the weights are gathered from all)
        if accelerator.is_main_process:
            dump.save_final(plain)

    def generations() -> dict[str, str]:
        return {"eval_generations.jsonl": evaluator.generations_jsonl()}

    # held-out scores of the student, then of the teacher on the same data (also a SeqKD teacher, which the
    # trainer does not hold); a Rouge-L evaluation also writes its responses
    return finish_run(trainer, start, teacher_model=teacher, after_save=save_final if dump is not None else None,
                      eval_files=generations if evaluator is not None else None)


def holds_out(data_args, metric: str) -> bool:
    """Whether the flags give held-out data to evaluate on: a validation file, a split of the training
    data, or (perplexity) a Hub dataset, which may have its own validation split."""
    return bool(data_args.validation_file or data_args.validation_split_percentage > 0
                or (metric == "perplexity" and data_args.dataset_name))


def main(argv: list[str] | None = None) -> int:
    return cli_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
