"""Sharded training with PyTorch FSDP2 (`--fsdp`): the student's parameters, gradients and AdamW moments
are split over the processes, and a frozen teacher's parameters too; each transformer block gathers its
full weights only for its own forward (and backward).

We call `torch.distributed.fsdp.fully_shard` ourselves rather than through accelerate's FSDP plugin:
accelerate turns FSDP on only for GPU-like devices (a multi-process CPU run stays MULTI_CPU, so gloo runs,
the ones the test suite can make, would never shard), and the trainer already does what the plugin adds
(the loss normalisation, clipping, checkpoints) its own way.

What changes under --fsdp, and where:

- `Sharding.shard_student` / `shard_teacher` (from the trainer's `create_optimizer`): one FSDP unit per
  transformer block (the classes the model names in `_no_split_modules`, or
  `--fsdp_transformer_layer_cls_to_wrap`), then the root (embeddings, head, tied weights). The student's
  blocks reshard after their forward under full_shard (ZeRO-3) and keep their gathered weights until the
  backward under shard_grad_op (ZeRO-2); its root keeps them in both (FSDP's default for a root: the
  backward starts there). The teacher always reshards (it has no backward). With --bf16 the weights
  are gathered in bf16, gradients are reduced in float32 and the model's outputs come back in float32, so
  every loss is computed in float32. --fsdp_offload keeps the shards (and AdamW's moments) in CPU memory.
- The saved model (checkpoints, the final dir, the save hook) is a plain copy: `export` gathers the full
  weights onto the main process's CPU and loads them into a fresh plain model, made for that save from a
  weightless skeleton of the student (on the meta device, with its buffers) kept since before sharding, so
  every model dir is a standard Hugging Face dir and no whole copy of the student stays in memory while it
  trains. It is a collective: every process calls it.
- Evaluation runs the sharded model on every process (each forward is a collective), so every process
  makes the same number of forwards (distill/evaluation.py, sequence_kd/sampling.py).
- Checkpoints keep the model and optimizer as torch.distributed.checkpoint (DCP) shards, one file per
  process, which any number of processes can read back (distill/run_io.py, distill/checkpoint.py).
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os

import torch
from torch import nn

from distill.errors import UsageError

logger = logging.getLogger(__name__)

FSDP_CHOICES = ("full_shard", "shard_grad_op")
SHARDED_DIR = "sharded"  # inside checkpoint-<step>/: the DCP shards of the training model and its optimizer


def check_fsdp_flags(args) -> None:
    """The --fsdp flags among themselves and with the training flags (TrainingArguments.validate)."""
    if args.fsdp is None:
        if args.fsdp_offload or args.fsdp_transformer_layer_cls_to_wrap:
            raise UsageError("--fsdp_offload/--fsdp_transformer_layer_cls_to_wrap configure --fsdp; add --fsdp "
                             "full_shard or drop them")
        return
    if args.fsdp not in FSDP_CHOICES:
        raise UsageError(f"--fsdp {args.fsdp!r}: choose {' or '.join(FSDP_CHOICES)}")
    if args.fp16:
        raise UsageError("--fsdp with --fp16 is not supported: fp16 needs a loss scaler that knows the shards; use "
                         "--bf16 (no scaling needed)")
    if args.cache_teacher_outputs:
        raise UsageError("--cache_teacher_outputs with --fsdp is not supported: each process builds its share of "
                         "the cache with a different number of teacher forwards, which a sharded teacher cannot do; "
                         "drop one of the two")


def check_fsdp_methods(args, *, teacher_learns: bool = False, use_opdf: bool = False,
                       use_opdf_flag: str = "--use_opdf") -> None:
    """Methods that cannot run sharded, refused before anything is loaded."""
    if args.fsdp is None:
        return
    if teacher_learns:
        raise UsageError("--fsdp with --train_teacher (ProKT, LGTM) is not supported: the learning teacher takes "
                         "its own optimizer steps and LGTM differentiates through a virtual step of the whole "
                         "student, neither of which is sharded; drop --fsdp")
    if use_opdf:
        raise UsageError(f"--fsdp with {use_opdf_flag} is not supported: OPDF's MPO cores are re-composed into "
                         "dense weights and aligned with the teacher's on every process, which needs the whole "
                         "student; drop --fsdp")


def ensure_process_group() -> None:
    """fully_shard needs a process group even for one process (`python run_glue.py --fsdp ...`, a resume
    onto one process): a 1-process group when no launcher made one."""
    import torch.distributed as dist
    if dist.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def is_sharded(model: nn.Module | None) -> bool:
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def is_shard(tensor: torch.Tensor | None) -> bool:
    """Whether `tensor` is an FSDP2 shard (a DTensor) rather than a whole tensor."""
    from torch.distributed.tensor import DTensor
    return isinstance(tensor, DTensor)


def gathered(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """A frozen teacher's parameter in full, for a loss that multiplies it with `like` (the hidden states):
    under --fsdp the teacher's root unit is resharded after each forward, so its output layer's weight is a
    shard when a fused LM loss reads it; all-gathered here (a collective every process makes at the same
    point of the step). Only for constants: the gathered copy carries no gradient back to the shard. Each
    shard is first moved to `like`'s device (under --fsdp_offload the shards live in CPU memory, and NCCL
    gathers GPU tensors only) and, under autocast, cast to its dtype (bf16: what the loss multiplies in, at
    half the bytes to gather and to hold). Anything else is returned as it is."""
    if not is_shard(tensor):
        return tensor
    from torch.distributed.tensor import DTensor
    device_type = like.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else tensor.dtype
    local = tensor.to_local().detach().to(device=like.device, dtype=dtype)
    # (shape and stride given: FSDP's shards may be uneven, which from_local cannot infer)
    whole = DTensor.from_local(local, tensor.device_mesh, tensor.placements, run_check=False, shape=tensor.shape,
                               stride=tensor.stride())
    return whole.full_tensor()


def all_processes(flag: bool, models) -> bool:
    """`flag` and the same flag of every other process when one of `models` is sharded (their forwards
    are collectives, so processes must decide together when to stop calling them); else `flag`."""
    import torch.distributed as dist
    if not any(is_sharded(m) for m in models) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)])  # (gloo reduces CPU tensors; a NCCL-only group needs them on the GPU)
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def transformer_blocks(model: nn.Module, class_names: str | None = None) -> list[nn.Module]:
    """The modules that become FSDP units: the entries of the model's layer lists whose class is one the
    model declares unsplittable (`_no_split_modules`: GPT2Block, BertLayer, LlamaDecoderLayer, ...), or
    those named by `class_names` (comma-separated). Only entries of a ModuleList: an embedding that is also
    unsplittable stays in the root unit with the head it may be tied to."""
    names = ({n.strip() for n in class_names.split(",") if n.strip()} if class_names else
             {n for m in model.modules() for n in (getattr(m, "_no_split_modules", None) or ())})
    blocks = [block for m in model.modules() if isinstance(m, nn.ModuleList)
              for block in m if type(block).__name__ in names]
    if class_names and not blocks:
        raise UsageError(f"--fsdp_transformer_layer_cls_to_wrap {class_names}: no layer of "
                         f"{type(model).__name__} has that class; name its transformer block class (e.g. "
                         "GPT2Block, BertLayer, LlamaDecoderLayer)")
    return blocks


class Sharding:
    """The student and teacher of one run under --fsdp, and the plain copy the student is saved through
    (the placement interface of distill/placement.py)."""

    def __init__(self, args, accelerator, transform):
        self.args, self.accelerator, self.transform = args, accelerator, transform
        self.skeleton: PlainSkeleton | None = None  # main process: what makes a plain (unsharded) student

    def prepare(self, student: nn.Module, teacher) -> tuple[nn.Module, object]:
        """The student and a frozen teacher sharded in place, then the student's AdamW over the shards
        (accelerate must not wrap the sharded student in DDP: FSDP reduces the gradients itself)."""
        from distill.optim import make_adamw
        from distill.plugins import IdentityTransform
        if not isinstance(self.transform, IdentityTransform):  # (OPDF is refused with its flags)
            raise UsageError("--fsdp with a student that trains in another form than it is saved (OPDF, a feature "
                             "projection between different hidden sizes) is not supported; drop --fsdp")
        if teacher.learns:  # (refused with the method's flags; a safety net for other callers)
            raise UsageError("--fsdp with a teacher that learns (ProKT, LGTM) is not supported; drop --fsdp")
        self.shard_student(student)
        if teacher.model is not None:
            self.shard_teacher(teacher.model)
        return student, make_adamw(student, self.args.learning_rate, self.args, self.accelerator.device)

    def eval_model(self, student: nn.Module) -> nn.Module:
        """The sharded student itself: each of its forwards is a collective, and gathering a plain copy onto
        every process would undo the sharding."""
        return student

    def gradient_sync(self, student: nn.Module, sync: bool):
        student.set_requires_gradient_sync(sync)  # (FSDP2 has no no_sync context: a switch on the module)
        return contextlib.nullcontext()

    def transformed(self, student: nn.Module) -> bool:
        return False  # (a transforming student is refused in `prepare`)

    def training_state(self, student: nn.Module, plain: nn.Module | None) -> None:
        return None  # (the training model is in the shards)

    def shard_writer(self, student: nn.Module, optimizer):
        return lambda directory: self.save_shards(student, optimizer, directory)

    def shard_reader(self, student: nn.Module, optimizer):
        return lambda directory: self.load_shards(student, optimizer, directory)

    def load_plain_state(self, student: nn.Module, state: dict | None = None) -> None:
        """The sharded student takes a plain state (the best step's; read by the main process, which passes
        it; None elsewhere): loaded into a plain copy, then sent to every process's shards. Every process
        must call it."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        full = {}
        if self.skeleton is not None:
            plain = self.skeleton.build()
            self.transform.load_dense_state(plain, state)  # (the main process always passes one)
            full = plain.state_dict()
        set_model_state_dict(student, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))

    def _policies(self, root: bool) -> dict:
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy
        # bf16 inside the model; only the root's outputs (what the losses read) come back in float32
        mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32,
                                   output_dtype=torch.float32 if root else None) if self.args.bf16
              else MixedPrecisionPolicy())
        # (pinned memory speeds the copies to a GPU; without one there is nothing to pin, and asking fails)
        offload = CPUOffloadPolicy(pin_memory=torch.cuda.is_available()) if self.args.fsdp_offload else OffloadPolicy()
        return {"mp_policy": mp, "offload_policy": offload}

    def _shard(self, model: nn.Module, reshard_after_forward: bool, what: str, root_stays_gathered: bool) -> None:
        from torch.distributed.fsdp import fully_shard
        blocks = transformer_blocks(model, self.args.fsdp_transformer_layer_cls_to_wrap)
        for block in blocks:
            fully_shard(block, reshard_after_forward=reshard_after_forward, **self._policies(root=False))
        # The student's root unit (embeddings, final norm, output layer) stays gathered from its forward to its
        # backward, FSDP's own default for a root, which the backward would gather again at once anyway: the
        # fused LM loss (losses/fused_vocab.py) reads the output layer's full weight between the two.
        fully_shard(model, reshard_after_forward=reshard_after_forward and not root_stays_gathered,
                    **self._policies(root=True))
        logger.info("FSDP (%s): %s sharded over %d processes in %d block units + the root", self.args.fsdp, what,
                    self.accelerator.num_processes, len(blocks))

    def shard_student(self, model: nn.Module) -> None:
        """In place, before its optimizer is made (the optimizer must hold the shards)."""
        if self.accelerator.is_main_process:
            self.skeleton = PlainSkeleton(model)
        self._shard(model, reshard_after_forward=self.args.fsdp == "full_shard", what="the student",
                    root_stays_gathered=True)

    def shard_teacher(self, model: nn.Module) -> None:
        """In place; a frozen teacher only runs forwards, so its gathered weights are freed after each."""
        self._shard(model, reshard_after_forward=True, what="the teacher", root_stays_gathered=False)

    def export(self, model: nn.Module) -> nn.Module | None:
        """The plain student with `model`'s current weights, on the main process (None elsewhere). Every
        process must call it: the full weights are gathered from all of them."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.skeleton is None:
            return None
        plain = self.skeleton.build()
        plain.load_state_dict(full)
        return plain

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> float:
        """The global gradient norm over every shard, and the gradients clipped to `max_norm`."""
        from torch.distributed.tensor import DTensor
        params = [p for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if isinstance(norm, DTensor):  # each process holds the norm of its shards: combine them
            norm = norm.full_tensor()
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return float(norm)

    # ------------------------------------------------------------------ checkpoints
    @staticmethod
    def save_shards(model: nn.Module, optimizer, directory: str) -> None:
        """The model's and optimizer's shards into `directory` (DCP: every process writes its own file, the
        main one the index). Every process must call it."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict
        model_state, optim_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=directory)

    @staticmethod
    def load_shards(model: nn.Module, optimizer, directory: str) -> None:
        """What `save_shards` wrote, resharded to this run's processes (DCP reads any process count)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, checkpoint_id=directory)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


class PlainSkeleton:
    """The student's structure without its weights: a copy on the meta device (no memory) and its buffers (small),
    from which `build` makes a plain student on the CPU whenever one is saved. The caller loads the weights
    into it and drops it after the save, so the main process holds a whole copy only while saving."""

    def __init__(self, model: nn.Module):
        # (every name of a buffer shared between modules: to_empty gives each its own storage)
        self.buffers = {name: b.detach().to("cpu", copy=True)
                        for name, b in model.named_buffers(remove_duplicate=False)}
        self.meta = copy.deepcopy(model).to("meta")

    def build(self) -> nn.Module:
        """A plain student with uninitialised parameters (load a full state dict into it) and the buffers."""
        plain = copy.deepcopy(self.meta).to_empty(device="cpu")
        for name, value in self.buffers.items():  # (non-persistent ones are in no state dict)
            plain.get_buffer(name).copy_(value)
        if hasattr(plain, "tie_weights"):  # to_empty gives tied parameters separate storage: tie them again
            plain.tie_weights()
        return plain


def has_shards(checkpoint: str) -> bool:
    return os.path.isdir(os.path.join(checkpoint, SHARDED_DIR))
