"""run_squad_w_distillation.py flags: Hugging Face's legacy SQuAD distillation script's names."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from feature_kd.args import TaskLossArguments


@dataclass
class SquadDataArguments:
    _argument_group_name = "data (SQuAD)"
    data_dir: str | None = field(default=None, metadata={"help": "Dir of --train_file and --predict_file when they are "
                                                                  "relative, as the legacy script joined them "
                                                                  "(default names train-v1.1.json, dev-v1.1.json)."})
    train_file: str | None = field(default=None, metadata={"help": "SQuAD v1.1 JSON to train on (default: the Hub's "
                                                                    "squad train split)."})
    predict_file: str | None = field(
        default=None, metadata={"aliases": ["--validation_file"],
                                "help": "SQuAD v1.1 JSON to evaluate on (default: the Hub's squad validation split)."})
    max_seq_length: int = field(default=384,
                                metadata={"help": "Tokens per window (question + context).", "range": ">= 16"})
    doc_stride: int = field(
        default=128, metadata={"help": "Tokens shared by consecutive windows of a long context.", "range": ">= 1"})
    max_query_length: int = field(default=64,
                                  metadata={"help": "Questions are cut to this many tokens.", "range": ">= 1"})
    n_best_size: int = field(default=20, metadata={"range": ">= 1", "help": "Start and end candidates per window."})
    max_answer_length: int = field(default=30, metadata={"range": ">= 1", "help": "Longest answer span, in tokens."})
    max_train_samples: int | None = field(default=None,
                                          metadata={"help": "Keep the first N training questions.", "range": ">= 1"})
    max_eval_samples: int | None = field(default=None,
                                         metadata={"help": "Keep the first N evaluation questions.", "range": ">= 1"})
    group_by_length: bool = field(default=True, metadata={"help": "Batch windows of similar length."})

    def resolve_paths(self) -> None:
        """As the legacy script: --data_dir data --train_file train.json means data/train.json (an absolute
        file name stays), and --data_dir alone means its train-v1.1.json and dev-v1.1.json."""
        if self.data_dir is not None:
            self.train_file = os.path.join(self.data_dir, self.train_file or "train-v1.1.json")
            self.predict_file = os.path.join(self.data_dir, self.predict_file or "dev-v1.1.json")


@dataclass
class SquadLossArguments(TaskLossArguments):
    alpha_squad: float = field(default=0.5, metadata={"help": "Weight of the span cross-entropy with the gold "
                                                              "answer (1.0 when there is no teacher).",
                                                      "range": ">= 0"})

