"""Prompt/response data of the generation-based methods: the prompts the student answers (MiniLLM
rollouts), the teacher answers (SeqKD) and the held-out prompts with their references (evaluation)."""
from __future__ import annotations

from distill.errors import UsageError
from lm.data import held_out_count, read_records


def prompt_records(data_args) -> tuple[list[dict], list[dict]]:
    """(training records, held-out records), each {'prompt', 'response'[, 'references']}: --train_file,
    and --validation_file or the last --validation_split_percentage of the training records (the same
    rule as the tokenised documents, so SFT and the generation methods hold out the same examples)."""
    if not data_args.train_file and data_args.validation_file:  # evaluation only
        return [], _prompt_rows(data_args.validation_file)
    if not data_args.train_file:
        raise UsageError("the generation methods need --train_file: a jsonl of prompt/response (or Dolly "
                         "instruction/context/response) rows")
    train = _prompt_rows(data_args.train_file)
    if data_args.validation_file:
        return train, _prompt_rows(data_args.validation_file)
    n_val = held_out_count(len(train), data_args.validation_split_percentage)
    return train[:len(train) - n_val], train[len(train) - n_val:]


def _prompt_rows(path: str) -> list[dict]:
    records = read_records(path)
    if "prompt" not in records[0]:
        raise UsageError(f"{path} holds plain text; the generation methods and Rouge-L need prompt/response rows "
                         "(jsonl with 'prompt' and 'response', or Dolly's 'instruction', 'context', 'response')")
    return records


def encode_prompts(records: list[dict], tokenizer, max_prompt_length: int) -> list[list[int]]:
    """Token ids of each prompt, keeping its LAST max_prompt_length tokens (the text next to the answer).
    An empty prompt starts from the BOS (GPT-2: <|endoftext|>) token."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = tokenizer([r["prompt"] for r in records], add_special_tokens=False)["input_ids"]
    out = [p[-max_prompt_length:] if p else [start] for p in ids]
    if any(p == [None] for p in out):
        raise UsageError("an empty prompt needs a tokenizer with a BOS or EOS token to start from")
    return out


def references(record: dict) -> list[str]:
    return record.get("references") or [record["response"]]
