"""OPDF flags: `--use_opdf` on top of any method (fine-tuning, KD, ProKT, LGTM)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from distill.args import changed_flags
from distill.errors import UsageError
from opdf.transform import DEFAULT_TARGETS


def parse_shape(text: str, flag: str) -> list[int]:
    try:
        shape = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        shape = []
    if not shape or min(shape) < 1:
        raise UsageError(f"{flag} {text!r}: expected comma-separated positive factors such as 32,1,1,1,24")
    return shape


@dataclass
class OPDFArguments:
    _argument_group_name = "OPDF (MPO over-parameterised student)"
    use_opdf: bool = field(
        default=False, metadata={"help": "Over-parameterise the student while it trains: the --mpo_targets Linear "
                                         "layers become trainable MPO cores. The saved student is a "
                                         "plain dense model."})
    mpo_targets: str = field(
        default=",".join(DEFAULT_TARGETS),
        metadata={"help": "Comma-separated layers to over-parameterise: query, key, value, attention_output, "
                          "intermediate, output."})
    mpo_input_shape: list[str] = field(
        default_factory=list,
        metadata={"help": "Factorisations of input dims, one per dim, e.g. 32,1,1,1,24 64,1,1,1,48 (a layer uses the "
                          "one whose product is its dim). Default: the paper's 768 = 32,1,1,1,24 and "
                          "3072 = 64,1,1,1,48, else [a,1,1,1,b] with a·b = dim."})
    mpo_output_shape: list[str] = field(
        default_factory=list, metadata={"help": "Factorisations of output dims (as --mpo_input_shape)."})
    mpo_truncate: int | None = field(
        default=None, metadata={"help": "Cap every bond dimension (the MPO then approximates the weight: fewer "
                                        "parameters, not exact at initialisation).", "range": ">= 1"})
    opdf_align_weight: float = field(
        default=1.0, metadata={"help": "Weight of the tensor alignment loss Σ MSE(C_k^S, C_k^T) over auxiliary cores "
                                       "of mapped layers (the central core stays free). 0 disables it; needed when "
                                       "teacher and student matrices differ in shape.", "range": ">= 0"})
    opdf_layer_map: str | None = field(
        default=None, metadata={"help": "Teacher layer for each student layer, comma-separated, e.g. 1,3,5. Default: "
                                        "evenly spaced, m(i) = (i+1)·L_t/L_s − 1 (2i+1 for twice the layers)."})

    def input_shapes(self) -> list[list[int]]:
        return [parse_shape(s, "--mpo_input_shape") for s in self.mpo_input_shape]

    def output_shapes(self) -> list[list[int]]:
        return [parse_shape(s, "--mpo_output_shape") for s in self.mpo_output_shape]

    def targets(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.mpo_targets.split(",") if t.strip())

    def validate(self) -> None:
        changed = changed_flags(self, [f.name for f in fields(self) if f.name != "use_opdf"])
        if changed and not self.use_opdf:
            raise UsageError(f"--{changed[0]} only applies to OPDF; add --use_opdf or drop the flag")
        if not self.targets():
            raise UsageError("--mpo_targets is empty; name at least one layer, e.g. query,key,value")
        lengths = {len(s) for s in self.input_shapes() + self.output_shapes()}
        if len(lengths) > 1:
            raise UsageError(f"--mpo_input_shape/--mpo_output_shape give different numbers of cores "
                             f"({sorted(lengths)}); every shape needs the same number of factors")
