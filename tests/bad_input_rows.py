"""The rows of the bad-input table (test_bad_input_table.py): (id, script, argv(toy, bad), words the
error line must contain). `bad` is the table's fixture of broken files and mismatched models."""
from __future__ import annotations

import os
import shutil

from conftest import FIXTURES

SCRIPTS = ("glue", "squad", "imdb", "lm")


def glue(toy, *extra, teacher=None):
    argv = ["--model_name_or_path", toy["student"], "--task_name", "sst2", "--do_train", "--max_steps", "1",
            "--report_to", "none", "--disable_tqdm"]
    if teacher:
        argv += ["--teacher_model", teacher]
    if "--data_dir" not in extra and "--train_file" not in extra:
        argv += ["--data_dir", toy["task"]]
    return [*argv, *extra]


def lm_flags(bad, *extra):
    return ["--teacher_name_or_path", bad["gpt2"], "--student_layers", "1", "--max_seq_length", "32",
            "--max_steps", "1", "--data_cache_dir", str(bad["root"] / "lm_cache"), "--disable_tqdm", "--report_to",
            "none", *extra]


def squad_flags(toy, *extra):
    return ["--model_name_or_path", toy["student"], "--do_train", "--max_steps", "1", "--max_seq_length", "64",
            "--doc_stride", "16", "--max_query_length", "16", "--report_to", "none", *extra]


# (id, script, argv(toy, bad), words the line must contain)
ROWS = [
    ("missing data dir", "glue", lambda t, b: glue(t, "--data_dir", str(b["root"] / "nope")), ["not a folder"]),
    ("empty train file", "glue", lambda t, b: glue(t, "--train_file", str(b["root"] / "empty.tsv")), ["no rows"]),
    ("wrong columns", "glue", lambda t, b: glue(t, "--task_name", "mnli"), ["columns", "right file"]),
    ("unknown label", "glue", lambda t, b: glue(t, "--train_file", str(b["root"] / "train_unknown_label.csv")),
     ["'maybe'"]),
    ("labels missing from dev", "glue", lambda t, b: glue(t, "--train_file", str(b["root"] / "train.tsv"),
                                                          "--validation_file", str(b["root"] / "dev_unlabelled.tsv"),
                                                          "--do_eval"), ["no 'label' column", "--test_file"]),
    ("teacher of another task", "glue", lambda t, b: glue(t, "--task_name", "mnli", "--data_dir",
                                                          os.path.join(FIXTURES, "MNLI"), teacher=t["teacher"]),
     ["2 outputs but the task has 3"]),
    ("teacher with another vocabulary", "glue", lambda t, b: glue(t, teacher=b["other_vocab_teacher"]),
     ["vocabular", "probe ids differ: True"]),  # (same size: the ids tell them apart)
    ("hidden-size mismatch for a feature loss", "glue",
     lambda t, b: glue(t, "--alpha_ce", "0.5", "--alpha_glue", "0.5", "--alpha_cos", "1", teacher=b["wide_teacher"]),
     ["hidden", "48", "32"]),
    ("conflicting precision flags", "glue", lambda t, b: glue(t, "--fp16", "--bf16"), ["--fp16", "choose one"]),
    ("conflicting layer flags", "glue", lambda t, b: glue(t, "--num_layers", "1", "--student_layers", "0"),
     ["--num_layers and --student_layers"]),
    ("sequence longer than the positions", "glue", lambda t, b: glue(t, "--max_seq_length", "4096"),
     ["max_seq_length 4096", "positions"]),
    ("NaN loss (a diverged teacher)", "glue", lambda t, b: glue(t, teacher=b["nan_teacher"]),
     ["nan at step 1", "--learning_rate"]),
    ("missing model", "glue", lambda t, b: ["--model_name_or_path", str(b["root"] / "no_model"),
                                            *glue(t)[2:]], ["no_model does not exist"]),
    ("remote code without --trust_remote_code", "glue",
     lambda t, b: ["--model_name_or_path", b["remote_code_model"], *glue(t)[2:]], ["--trust_remote_code"]),
    ("not a SQuAD file", "squad", lambda t, b: squad_flags(t, "--train_file", str(b["root"] / "squad_not_squad.json")),
     ["not in the SQuAD format"]),
    ("missing SQuAD file", "squad", lambda t, b: squad_flags(t, "--train_file", str(b["root"] / "train-v1.1.json")),
     ["SQuAD file not found"]),
    ("SQuAD --do_predict", "squad", lambda t, b: squad_flags(t, "--train_file", "x.json", "--do_predict"),
     ["--do_predict", "--do_eval"]),
    ("IMDB csv without a text column", "imdb",
     lambda t, b: ["--model_name_or_path", t["student"], "--data_file", str(b["root"] / "imdb_no_text.csv"),
                   "--do_train", "--report_to", "none"], ["lacks column", "text"]),
    ("IMDB file missing", "imdb", lambda t, b: ["--model_name_or_path", t["student"], "--data_file",
                                                str(b["root"] / "imdb.csv"), "--do_train"], ["IMDB file not found"]),
    ("LM corpus without text", "lm", lambda t, b: lm_flags(b, "--train_file", str(b["root"] / "empty.txt")),
     ["holds no text"]),
    ("LM teacher/student vocabulary mismatch", "lm",
     lambda t, b: ["--teacher_name_or_path", b["gpt2"], "--model_name_or_path", b["word_gpt2"], "--train_file",
                   b["corpus"], "--max_steps", "1", "--max_seq_length", "32"],
     ["vocabular"]),
    ("LM sequence longer than the positions", "lm",
     lambda t, b: lm_flags(b, "--train_file", b["corpus"], "--max_seq_length", "128"), ["128", "positions"]),
    ("LM KD flags without a teacher", "lm",
     lambda t, b: ["--model_name_or_path", b["gpt2"], "--train_file", b["corpus"], "--kd_ratio", "0.5",
                   "--max_steps", "1"], ["teacher"]),
]


# --------------------------------------------------------------------------- flags: rows
# Refused when the flags are parsed (values against the ranges declared with each flag, types, unknown
# flags), before any file is read: the data paths need not exist.
def imdb_flags(t, *extra):
    return ["--model_name_or_path", t["student"], "--data_file", "imdb.csv.gz", "--do_train", *extra]


def squad_only(t, *extra):
    return squad_flags(t, "--train_file", "train.json", *extra)


def lm_only(b, *extra):
    return lm_flags(b, "--train_file", "corpus.txt", *extra)


def fifo_task(t, b) -> str:
    """A GLUE folder whose train.tsv is a named pipe (reading it would wait forever)."""
    folder = b["root"] / "fifo_task"
    if not folder.exists():
        shutil.copytree(t["task"], folder)
        os.remove(folder / "train.tsv")
        os.mkfifo(folder / "train.tsv")
    return str(folder)


FLAG_ROWS = [
    ("train.tsv is a named pipe", "glue", lambda t, b: glue(t, "--data_dir", fifo_task(t, b)),
     ["train.tsv is not a regular file"]),
    ("teacher given as its config file", "glue",
     lambda t, b: glue(t, teacher=os.path.join(t["teacher"], "config.json")), ["config.json is a file", "model's dir"]),
    ("mistyped flag", "glue", lambda t, b: glue(t, "--learnig_rate", "1e-3"),
     ["unknown flag --learnig_rate", "did you mean --learning_rate"]),
    ("abbreviated flag", "glue", lambda t, b: glue(t, "--learn", "1e-3"), ["unknown flag --learn ", "--learning_rate"]),
    ("value without its flag", "glue", lambda t, b: glue(t, "stray"), ["unexpected argument(s) stray"]),
    ("flag without its value", "glue", lambda t, b: glue(t, "--learning_rate", "--do_eval"),
     ["--learning_rate", "expected one"]),
    ("learning rate not a number", "glue", lambda t, b: glue(t, "--learning_rate", "abc"), ["invalid float value"]),
    ("learning rate NaN", "glue", lambda t, b: glue(t, "--learning_rate", "nan"), ["--learning_rate must be a finite"]),
    ("learning rate inf", "glue", lambda t, b: glue(t, "--learning_rate", "inf"), ["--learning_rate must be a finite"]),
    ("negative learning rate, spaced", "glue", lambda t, b: glue(t, "--learning_rate", "-1e-5"),
     ["--learning_rate", "expected one argument", "--flag=value"]),
    ("negative learning rate", "glue", lambda t, b: glue(t, "--learning_rate=-1e-5"),
     ["--learning_rate must be >= 0"]),
    ("boolean flag with a non-boolean", "glue", lambda t, b: glue(t, "--do_eval", "maybe"), ["--do_eval", "maybe"]),
    ("max_seq_length 0", "glue", lambda t, b: glue(t, "--max_seq_length", "0"), ["--max_seq_length must be >= 8"]),
    ("batch size 0", "glue", lambda t, b: glue(t, "--per_device_train_batch_size", "0"),
     ["--per_device_train_batch_size must be >= 1, got 0"]),
    ("eval batch size 0 (old spelling)", "glue", lambda t, b: glue(t, "--per_gpu_eval_batch_size", "0"),
     ["--per_device_eval_batch_size must be >= 1"]),
    ("logging_steps 0", "glue", lambda t, b: glue(t, "--logging_steps", "0"), ["--logging_steps must be >= 1"]),
    ("negative warmup_steps", "glue", lambda t, b: glue(t, "--warmup_steps", "-1"), ["--warmup_steps must be >= 0"]),
    ("warmup_ratio 1.5", "glue", lambda t, b: glue(t, "--warmup_ratio", "1.5"), ["--warmup_ratio must be in [0, 1)"]),
    ("negative eval_steps", "glue", lambda t, b: glue(t, "--eval_steps", "-5"), ["--eval_steps must be >= 1"]),
    ("save_steps 0", "glue", lambda t, b: glue(t, "--save_steps", "0"), ["--save_steps must be >= 1"]),
    ("negative save_total_limit", "glue", lambda t, b: glue(t, "--save_total_limit", "-1"),
     ["--save_total_limit must be >= 1"]),
    ("num_train_epochs 0", "glue", lambda t, b: glue(t, "--num_train_epochs", "0"),
     ["--num_train_epochs must be > 0"]),
    ("max_steps 0", "glue", lambda t, b: glue(t, "--max_steps", "0"), ["--max_steps must be -1 or >= 1"]),
    ("gradient_accumulation_steps 0", "glue", lambda t, b: glue(t, "--gradient_accumulation_steps", "0"),
     ["--gradient_accumulation_steps must be >= 1"]),
    ("negative max_grad_norm", "glue", lambda t, b: glue(t, "--max_grad_norm", "-1"), ["--max_grad_norm must be >= 0"]),
    ("negative weight_decay", "glue", lambda t, b: glue(t, "--weight_decay", "-0.1"), ["--weight_decay must be >= 0"]),
    ("adam_beta2 1", "glue", lambda t, b: glue(t, "--adam_beta2", "1.0"), ["--adam_beta2 must be in [0, 1)"]),
    ("negative seed", "glue", lambda t, b: glue(t, "--seed", "-1"), ["--seed must be in [0, 4294967295]"]),
    ("seed beyond 32 bits", "glue", lambda t, b: glue(t, "--seed", str(2**32)), ["--seed must be in"]),
    ("seed not an integer", "glue", lambda t, b: glue(t, "--seed", "1.5"), ["--seed", "invalid int value"]),
    ("alpha_kd 2", "glue", lambda t, b: glue(t, "--alpha_kd", "2", teacher=t["teacher"]),
     ["--alpha_kd must be in [0, 1], got 2"]),
    ("temperature 0", "glue", lambda t, b: glue(t, "--temperature", "0", teacher=t["teacher"]),
     ["--temperature must be in [0.01, 1000]"]),
    ("temperature that overflows τ²", "glue", lambda t, b: glue(t, "--temperature", "1e308", teacher=t["teacher"]),
     ["--temperature must be in [0.01, 1000]"]),
    ("adam_epsilon 0 (0/0 for parameters without gradient)", "glue", lambda t, b: glue(t, "--adam_epsilon", "0"),
     ["--adam_epsilon must be > 0"]),
    ("a flag without its value at the end", "glue", lambda t, b: glue(t, "--seed"), ["--seed: expected one argument"]),
    ("an argument file with more flags", "glue", lambda t, b: [str(b["root"] / "args.json"), "--seed", "2"],
     ["must be the only argument", "--seed"]),
    ("negative feature weight", "glue", lambda t, b: glue(t, "--alpha_corr", "-0.5", teacher=t["teacher"]),
     ["--alpha_corr must be >= 0"]),
    ("num_layers 0", "glue", lambda t, b: glue(t, "--num_layers", "0"), ["--num_layers must be >= 1"]),
    ("teacher learning rate NaN", "glue",
     lambda t, b: glue(t, "--train_teacher", "--t_learning_rate", "nan", teacher=t["teacher"]),
     ["--t_learning_rate must be a finite"]),
    ("LGTM finite-difference radius 0", "glue",
     lambda t, b: glue(t, "--train_teacher", "--use_lgtm", "--lgtm_fd_radius", "0", teacher=t["teacher"]),
     ["--lgtm_fd_radius must be > 0"]),
    ("OPDF bond cap 0", "glue", lambda t, b: glue(t, "--use_opdf", "--mpo_truncate", "0", teacher=t["teacher"]),
     ["--mpo_truncate must be >= 1"]),
    ("unknown eval strategy", "glue", lambda t, b: glue(t, "--eval_strategy", "sometimes"), ["sometimes", "steps"]),
    ("unknown report_to", "glue", lambda t, b: glue(t, "--report_to", "wandb"), ["--report_to", "tensorboard"]),
    ("SQuAD mistyped flag", "squad", lambda t, b: squad_only(t, "--doc_strid", "64"),
     ["unknown flag --doc_strid", "--doc_stride"]),
    ("SQuAD doc_stride 0", "squad", lambda t, b: squad_only(t, "--doc_stride", "0"), ["--doc_stride must be >= 1"]),
    ("SQuAD max_query_length 0", "squad", lambda t, b: squad_only(t, "--max_query_length", "0"),
     ["--max_query_length must be >= 1"]),
    ("SQuAD n_best_size 0", "squad", lambda t, b: squad_only(t, "--n_best_size", "0"), ["--n_best_size must be >= 1"]),
    ("SQuAD window without room for context", "squad",
     lambda t, b: squad_only(t, "--max_seq_length", "32", "--max_query_length", "30"),
     ["--doc_stride 16 leaves no room", "lower --max_query_length or raise --max_seq_length"]),
    ("SQuAD max_seq_length 8", "squad", lambda t, b: squad_only(t, "--max_seq_length", "8"),
     ["--max_seq_length must be >= 16"]),
    ("SQuAD negative alpha_squad", "squad", lambda t, b: squad_only(t, "--alpha_squad", "-1"),
     ["--alpha_squad must be >= 0"]),
    ("SQuAD batch size 0", "squad", lambda t, b: squad_only(t, "--per_gpu_train_batch_size", "0"),
     ["--per_device_train_batch_size must be >= 1"]),
    ("IMDB mistyped flag", "imdb", lambda t, b: imdb_flags(t, "--alpha_imbd", "0.5"),
     ["unknown flag --alpha_imbd", "--alpha_imdb"]),
    ("IMDB dev_fraction 1", "imdb", lambda t, b: imdb_flags(t, "--dev_fraction", "1"),
     ["--dev_fraction must be in (0, 1)"]),
    ("IMDB negative head_tokens", "imdb", lambda t, b: imdb_flags(t, "--head_tokens", "-1"),
     ["--head_tokens must be >= 0"]),
    ("IMDB alpha_imdb NaN", "imdb", lambda t, b: imdb_flags(t, "--alpha_imdb", "nan"),
     ["--alpha_imdb must be a finite"]),
    ("IMDB num_train_epochs negative", "imdb", lambda t, b: imdb_flags(t, "--num_train_epochs", "-2"),
     ["--num_train_epochs must be > 0"]),
    ("LM mistyped original flag", "lm", lambda t, b: lm_only(b, "--dump_pth", "out"), ["unknown flag --dump_pth"]),
    ("LM kd_ratio 1.5", "lm", lambda t, b: lm_only(b, "--kd_ratio", "1.5"), ["--kd_ratio must be in [0, 1]"]),
    ("LM jsd_beta 2", "lm", lambda t, b: lm_only(b, "--kd_loss", "jsd", "--jsd_beta", "2"),
     ["--jsd_beta must be in [0, 1]"]),
    ("LM validation_split_percentage 100", "lm", lambda t, b: lm_only(b, "--validation_split_percentage", "100"),
     ["--validation_split_percentage must be in [0, 100)"]),
    ("LM kd_chunk_size 0", "lm", lambda t, b: lm_only(b, "--kd_chunk_size", "0"), ["--kd_chunk_size must be >= 1"]),
    ("LM mlm_mask_prop 0", "lm", lambda t, b: lm_only(b, "--mlm", "--mlm_mask_prop", "0"),
     ["--mlm_mask_prop must be in (0, 1)"]),
    ("LM masking split not summing to 1", "lm",
     lambda t, b: lm_only(b, "--mlm", "--alpha_mlm", "1", "--word_mask", "0.5"), ["sum to 1"]),
    ("LM MiniLLM top_p 0", "lm", lambda t, b: lm_only(b, "--method", "minillm", "--top_p", "0"),
     ["--top_p must be in (0, 1]"]),
    ("LM MiniLLM gamma 0", "lm", lambda t, b: lm_only(b, "--method", "minillm", "--gamma", "0"),
     ["--gamma must be in (0, 1]"]),
    ("LM MiniLLM num_rollouts 0", "lm", lambda t, b: lm_only(b, "--method", "minillm", "--num_rollouts", "0"),
     ["--num_rollouts must be >= 1"]),
    ("LM negative n_gpu", "lm", lambda t, b: lm_only(b, "--n_gpu", "-1"), ["--n_gpu must be >= 0"]),
    ("LM batch size 0 (original spelling)", "lm", lambda t, b: lm_only(b, "--batch_size", "0"),
     ["--per_device_train_batch_size must be >= 1"]),
]
