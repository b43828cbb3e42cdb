"""run_imdb_w_distillation.py flags."""
from __future__ import annotations

from dataclasses import dataclass, field

from feature_kd.args import TaskLossArguments


@dataclass
class ImdbDataArguments:
    _argument_group_name = "data (IMDB)"
    data_file: str | None = field(default=None, metadata={"help": "Local IMDB csv(.gz) with columns split,label,text "
                                                                   "(e.g. imdb_50k.csv.gz). "
                                                                   "Default: the Hub's imdb."})
    dev_fraction: float = field(default=0.1, metadata={"help": "Label-stratified share of TRAIN held out as the dev "
                                                               "set that selects the best checkpoint.",
                                                       "range": "(0, 1)"})
    max_seq_length: int = field(default=512,
                                metadata={"help": "Tokens per review, special tokens included.", "range": ">= 8"})
    truncation: str = field(default="head_tail", metadata={"help": "Long reviews: head_tail (first --head_tokens + "
                                                                   "last tokens, Sun et al. 2019), head or tail."})
    head_tokens: int = field(default=128,
                             metadata={"help": "Tokens kept from the start with head_tail.", "range": ">= 0"})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep N training reviews (after the dev "
                                                                          "split; a seeded random subset).",
                                                                  "range": ">= 1"})
    max_eval_samples: int | None = field(default=None, metadata={"range": ">= 1", "help": "Keep N dev reviews."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Keep N test reviews (a seeded random "
                                                                            "subset).", "range": ">= 1"})
    group_by_length: bool = field(default=True, metadata={"help": "Batch reviews of similar length."})


@dataclass
class ImdbLossArguments(TaskLossArguments):
    alpha_imdb: float = field(default=0.5, metadata={"help": "Weight of the cross-entropy with the gold label "
                                                             "(1.0 when there is no teacher).", "range": ">= 0"})
