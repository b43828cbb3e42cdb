"""From flags to what train_lm_distill.py hands the trainer for the generation-based methods:
MiniLLM's rollout source and objective, SeqKD's teacher-written training documents, and the
Rouge-L evaluator."""
from __future__ import annotations

import os

from distill.errors import UsageError
from lm.build import data_cache_dir
from lm.data import cached_documents, causal_sequences, file_content_key, read_records, tokenize_records
from sequence_kd.data import encode_prompts, prompt_records, references
from sequence_kd.evaluation import GenerationEvaluator
from sequence_kd.minillm import MiniLLMObjective
from sequence_kd.rollouts import RolloutSource
from sequence_kd.seqkd import responses_key, teacher_responses


def sampling_settings(generation, tokenizer, pad_id: int) -> dict:
    """Keyword arguments of sequence_kd.sampling.sample shared by rollouts, SeqKD and evaluation."""
    return dict(max_new_tokens=generation.max_new_tokens, eos_id=tokenizer.eos_token_id, pad_id=pad_id,
                vocab_size=len(tokenizer), temperature=generation.gen_temperature, top_p=generation.top_p)


def check_generation_length(models, max_prompt_length: int, max_new_tokens: int) -> None:
    for model in models:
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
        if limit and max_prompt_length + max_new_tokens > limit:
            raise UsageError(f"--max_prompt_length {max_prompt_length} + --max_new_tokens {max_new_tokens} exceeds "
                             f"the model's {limit} positions; lower one of them")


def minillm_training(mini, data_args, train_args, tokenizer, teacher_model, sampling: dict, accelerator,
                     chunk_size: int, kd_ratio: float | None):
    """(RolloutSource, MiniLLMObjective)."""
    train_records, _ = prompt_records(data_args)
    lm_dataset = None
    if mini.lm_train_file and mini.lm_coef > 0:
        docs = cached_documents(file_content_key(mini.lm_train_file), lambda: read_records(mini.lm_train_file),
                                tokenizer, True, data_cache_dir(data_args),
                                overwrite=data_args.overwrite_cache)
        lm_dataset = causal_sequences(docs, data_args.max_seq_length)
        if docs.has_prompts:
            raise UsageError(f"--lm_train_file {mini.lm_train_file} holds prompt/response rows; the LM term "
                             "needs plain text")
    source = RolloutSource(
        prompts=encode_prompts(train_records, tokenizer, mini.max_prompt_length), teacher=teacher_model, args=mini,
        sampling=sampling, batch_size=train_args.per_device_train_batch_size,
        accumulation_steps=train_args.gradient_accumulation_steps, seed=train_args.seed, pad_id=sampling["pad_id"],
        world_size=accelerator.num_processes, rank=accelerator.process_index, lm_dataset=lm_dataset,
        lm_batch_size=mini.lm_batch_size)
    objective = MiniLLMObjective(vocab_size=len(tokenizer), single_step_reg=mini.single_step_reg,
                                 cliprange=mini.cliprange, lm_coef=mini.lm_coef,
                                 kd_ratio=0.5 if kd_ratio is None else kd_ratio, has_lm_data=lm_dataset is not None,
                                 chunk_size=chunk_size)
    return source, objective


def seqkd_documents(mini, data_args, model_args, tokenizer, teacher_model, sampling: dict, seed: int,
                    batch_size: int):
    """(training documents: the prompts with the teacher's responses, held-out documents: with the
    gold responses; none when nothing is held out)."""
    train_records, val_records = prompt_records(data_args)
    prompts = encode_prompts(train_records, tokenizer, mini.max_prompt_length)
    key = responses_key(model_args.teacher_model, prompts, sampling, seed)
    path = mini.seqkd_file or os.path.join(data_cache_dir(data_args), f"seqkd-{key}.jsonl")
    rows = teacher_responses(teacher_model, tokenizer, train_records, prompts, path=path, key=key, sampling=sampling,
                             seed=seed, batch_size=batch_size)
    train = tokenize_records(rows, tokenizer, True)
    if not val_records:  # nothing held out (--validation_split_percentage 0, training alone): no documents
        return train, train.subset(len(train), len(train))
    return train, tokenize_records(val_records, tokenizer, True)


def rouge_evaluator(mini, data_args, generation, tokenizer, sampling: dict, batch_size: int,
                    show_progress: bool = True) -> GenerationEvaluator:
    _, val_records = prompt_records(data_args)
    if data_args.max_eval_samples is not None:
        val_records = val_records[:data_args.max_eval_samples]
    return GenerationEvaluator(encode_prompts(val_records, tokenizer, mini.max_prompt_length),
                               [r["prompt"] for r in val_records], [references(r) for r in val_records], tokenizer,
                               seeds=generation.seeds(), batch_size=batch_size, sampling=sampling,
                               show_progress=show_progress)
