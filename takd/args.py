"""The TAKD flags (--ta_models, per-stage --ta_learning_rates/--ta_epochs/--ta_max_steps) and the
rule that picks an assistant's layers when it is given as a layer count."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from distill.errors import UsageError

# per-assistant flag -> the main flag it replaces in an assistant's stage, and its type
BUDGET_FLAGS = (("ta_learning_rates", "learning_rate", float), ("ta_epochs", "num_train_epochs", float),
                ("ta_max_steps", "max_steps", int))


@dataclass
class TAKDArguments:
    _argument_group_name = "TAKD (teacher-assistant chains)"
    ta_models: str | None = field(
        default=None,
        metadata={"help": "Teacher assistants, comma-separated, from the teacher's side: Hub ids / local dirs, "
                          "or layer counts such as 4 (a model of 4 layers copied from the previous model of the "
                          "chain, evenly spaced: first and last kept). Turns the run into the chain teacher -> "
                          "TA_1 -> ... -> student; every stage is a full run of the chosen method, and its best "
                          "dev model teaches the next stage. Stages go to output_dir/stage_<k>_<name>/."})
    ta_learning_rates: str | None = field(
        default=None, metadata={"help": "Learning rate of each assistant's stage (one value, or one per TA); "
                                        "default --learning_rate. The student's stage uses --learning_rate."})
    ta_epochs: str | None = field(
        default=None, metadata={"help": "Epochs of each assistant's stage (one value, or one per TA); default "
                                        "--num_train_epochs."})
    ta_max_steps: str | None = field(
        default=None, metadata={"help": "Optimizer steps of each assistant's stage (one value, or one per TA); "
                                        "default --max_steps."})

    def assistants(self) -> list[Assistant]:
        specs = [s.strip() for s in (self.ta_models or "").split(",")]
        if not specs or any(not s for s in specs):
            raise UsageError(f"--ta_models {self.ta_models!r}: expected comma-separated model paths or layer counts, "
                             "e.g. 4 or 6,3 or prajjwal1/bert-small")
        return [Assistant.parse(s) for s in specs]

    def stage_budgets(self, count: int) -> list[tuple[tuple[str, float], ...]]:
        """For each of `count` assistants, the (main flag, value) pairs its stage uses instead of the
        main flags: ((learning_rate, 1e-4), (num_train_epochs, 3.0)), ..."""
        columns = [(main, values) for flag, main, cast in BUDGET_FLAGS
                   if (values := self.per_stage(flag, cast, count)) is not None]
        return [tuple((main, values[i]) for main, values in columns) for i in range(count)]

    def per_stage(self, flag: str, cast, count: int) -> list | None:
        """The values of --<flag> for `count` assistants (one value applies to all), or None."""
        raw = getattr(self, flag)
        if raw is None:
            return None
        try:
            values = [cast(v) for v in raw.split(",")]
        except ValueError:
            raise UsageError(f"--{flag} {raw!r}: expected comma-separated numbers") from None
        if len(values) == 1:
            values *= count
        if len(values) != count or any(v < 0 for v in values):
            raise UsageError(f"--{flag} {raw!r}: give one non-negative value, or one per assistant ({count})")
        return values

    def validate(self, do_train: bool, do_eval: bool, has_teacher: bool, max_steps: int) -> None:
        if not (do_train and do_eval):
            raise UsageError("--ta_models trains every stage and picks each stage's model on the dev set: "
                             "pass --do_train and --do_eval")
        if not has_teacher:
            raise UsageError("--ta_models needs the chain's first teacher: pass --teacher_model")
        if self.ta_epochs is not None and self.ta_max_steps is not None:
            raise UsageError("--ta_epochs and --ta_max_steps both set the assistants' budget; pass one")
        if self.ta_epochs is not None and max_steps > 0:
            raise UsageError("--ta_epochs with --max_steps: --max_steps would override the assistants' epochs; "
                             "use --ta_max_steps, or --num_train_epochs instead of --max_steps")


@dataclass(frozen=True)
class Assistant:
    """One --ta_models entry: a model to load (`path`) or a layer count to copy (`num_layers`)."""
    spec: str
    num_layers: int | None = None
    path: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Assistant:
        if spec.isdigit():
            if int(spec) < 1:
                raise UsageError(f"--ta_models: an assistant needs at least 1 layer, got {spec}")
            return cls(spec, num_layers=int(spec))
        return cls(spec, path=spec)

    @property
    def name(self) -> str:
        """What the stage dir is called after: '4layers', or the model dir's / Hub id's last part."""
        if self.num_layers is not None:
            return f"{self.num_layers}layers"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(os.path.normpath(self.path))) or "ta"


def spread_layers(num_source: int, num_target: int) -> list[int]:
    """The layers an assistant of `num_target` layers copies from a model of `num_source`: evenly spaced
    from the first to the last, rounded half up (12 -> 6 gives DistilBERT's 0,2,4,7,9,11; 6 -> 4 gives
    0,2,3,5). Keeping the first layer keeps the embeddings' consumer, keeping the last the head's
    producer. A single layer is the first."""
    if not 1 <= num_target <= num_source:
        raise UsageError(f"--ta_models: cannot copy {num_target} layers from a model of {num_source}; an assistant "
                         "given as a layer count must not be larger than the model before it in the chain")
    if num_target == 1:
        return [0]
    span, gaps = num_source - 1, num_target - 1
    return [(2 * i * span + gaps) // (2 * gaps) for i in range(num_target)]  # round(i·span/gaps), half up
