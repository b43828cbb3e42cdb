"""--fsdp (distill/sharding.py): 2 CPU processes (gloo) with the student and teacher sharded by FSDP2 end
where the unsharded runs end; a killed sharded run resumes exactly; a sharded checkpoint resumes on another
number of processes; the final model is a plain Hugging Face dir; methods that cannot be sharded are refused.

The multi-process runs are forked from the pre-warmed launcher (tests/launcher.py: `run_processes` gives
each process torchrun's environment), so each costs seconds, not the imports of a fresh interpreter.

Tolerances: a sharded run sums its gradients in another order than a 1-process run (reduce-scatter over
processes, then each process's shards), which moves float32 results by float rounding, as two DDP
processes do: the comparison of test_two_process_equivalence.py (weights to rtol 1e-4 / atol 2e-5 after
3 AdamW steps, logged losses and metrics to rel 1e-4). A run and its own resumption compute the very same
sums, so they are compared exactly (conftest.assert_same_run)."""
from __future__ import annotations

import json
import os
import random
import shutil

import pytest
import torch
from conftest import assert_same_run, toy_lm_corpus
from safetensors.torch import load_file
from test_two_process_equivalence import assert_same_result, save_without_dropout

FSDP = ["--fsdp", "full_shard"]


@pytest.fixture(scope="module")
def models(toy, tmp_path_factory):
    from toys import build_gpt2
    from transformers import BertForSequenceClassification, GPT2LMHeadModel

    from distill.toy import toy_sentence
    root = tmp_path_factory.mktemp("fsdp")
    cls = {name: save_without_dropout(BertForSequenceClassification, toy[name], root / name, "bert")
           for name in ("student", "teacher")}
    corpus, bpe = toy_lm_corpus(str(root), n_docs=60)
    gpt2 = build_gpt2(str(root / "gpt2_dropout"), bpe, layers=2, hidden=32, heads=2, max_positions=64, seed=1)
    small = build_gpt2(str(root / "small_dropout"), bpe, layers=1, hidden=32, heads=2, max_positions=64, seed=2)
    rng = random.Random(0)
    rows = [{"prompt": toy_sentence(rng)[0] + " .\n", "response": toy_sentence(rng)[0] + " ."} for _ in range(30)]
    with open(root / "pr.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return {"root": root, "corpus": corpus, "gpt2": save_without_dropout(GPT2LMHeadModel, gpt2, root / "gpt2", "gpt2"),
            "gpt2_small": save_without_dropout(GPT2LMHeadModel, small, root / "gpt2_small", "gpt2"),
            "prompts": str(root / "pr.jsonl"), **cls}


COMMON = ["--do_train", "--do_eval", "--max_steps", "3", "--learning_rate", "1e-3", "--logging_steps", "1",
          "--per_device_eval_batch_size", "5", "--report_to", "none", "--disable_tqdm"]


def glue_flags(toy, models) -> list:
    # an evaluation (and so a checkpoint) mid-training, at step 2 of 3
    return ["run_glue.py", "--model_name_or_path", models["student"], "--teacher_model", models["teacher"],
            "--task_name", "sst2", "--data_dir", toy["task"], "--do_predict", "--alpha_kd", "0.5", "--temperature", "2",
            "--eval_steps", "2", *COMMON]


def lm_flags(models, *method) -> list:
    return ["train_lm_distill.py", "--teacher_name_or_path", models["gpt2"], "--student_layers", "1", "--train_file",
            models["corpus"], "--max_seq_length", "32", "--validation_split_percentage", "20", "--data_cache_dir",
            models["root"] / "lm_cache", *method, *COMMON]


def two_processes(launch, argv: list, out, kill=None, expect: int = 0) -> str:
    results = launch.run_processes([*argv, "--per_device_train_batch_size", "8", "--output_dir", out], 2, kill)
    for code, log in results:
        assert code == expect, log[-3000:]
    return results[0][1]


def one_process(launch, argv: list, out, batch: int = 16) -> str:
    code, log = launch.run([*argv, "--per_device_train_batch_size", batch, "--output_dir", out])
    assert code == 0, log[-3000:]
    return log


@pytest.fixture(scope="module")
def glue_runs(toy, models, launch, tmp_path_factory):
    """The 1-process reference and the uninterrupted 2-process FSDP run of the GLUE KD command."""
    root = tmp_path_factory.mktemp("glue_runs")
    one_process(launch, glue_flags(toy, models), root / "one")
    log = two_processes(launch, [*glue_flags(toy, models), *FSDP], root / "fsdp")
    assert "FSDP (full_shard): the student sharded over 2 processes in 1 block units" in log
    assert "FSDP (full_shard): the teacher sharded over 2 processes in 2 block units" in log
    return {"one": str(root / "one"), "fsdp": str(root / "fsdp")}


def test_glue_kd_sharded_over_two_processes_ends_where_one_process_ends(glue_runs):
    assert_same_result(glue_runs["one"], glue_runs["fsdp"], ["eval_results.json", "SST-2.tsv"])
    # checkpoints keep the training state as shards, beside the plain model
    assert os.path.isfile(os.path.join(glue_runs["fsdp"], "checkpoint-3", "sharded", ".metadata"))
    assert os.path.isfile(os.path.join(glue_runs["fsdp"], "checkpoint-3", "model.safetensors"))
    assert not [n for n in os.listdir(glue_runs["fsdp"]) if n.startswith(".tmp")]


def test_the_final_model_is_a_plain_hugging_face_dir(glue_runs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    out = glue_runs["fsdp"]
    assert not os.path.exists(os.path.join(out, "sharded"))
    model = AutoModelForSequenceClassification.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    saved, ref = load_file(os.path.join(out, "model.safetensors")), load_file(os.path.join(glue_runs["one"],
                                                                                            "model.safetensors"))
    state = model.state_dict()
    assert saved.keys() == ref.keys()
    for key, value in saved.items():
        assert value.dtype == torch.float32 and torch.equal(state[key], value), key


@pytest.mark.parametrize("method", ["forward_kl"])
def test_lm_distillation_sharded_over_two_processes_ends_where_one_process_ends(models, launch, tmp_path, method):
    argv = lm_flags(models, "--kd_loss", method, "--kd_ratio", "0.5")
    one_process(launch, argv, tmp_path / "one")
    log = two_processes(launch, [*argv, *FSDP], tmp_path / "fsdp")
    assert "fused output layers" in log  # the default: the loss reads the sharded models' output layers
    assert_same_result(str(tmp_path / "one"), str(tmp_path / "fsdp"), ["eval_results.json"])


def test_minillm_sharded_over_two_processes_ends_where_two_ddp_processes_end(models, launch, tmp_path):
    """MiniLLM samples each process's rollouts with a seed of its own (rank), so a 2-process run is
    compared with the 2-process DDP run: the same rollouts, the same updates. The sampling loop runs the
    sharded student and teacher in step on both processes (sequence_kd/sampling.py)."""
    argv = ["train_lm_distill.py", "--method", "minillm", "--teacher_name_or_path", models["gpt2"],
            "--model_name_or_path", models["gpt2_small"], "--train_file", models["prompts"],
            "--lm_train_file", models["corpus"], "--num_rollouts", "8", "--chunk_size", "4", "--ppo_epochs", "1",
            "--max_steps", "2", "--max_seq_length", "48", "--max_prompt_length", "24", "--max_new_tokens", "8",
            "--validation_split_percentage", "20", "--eval_seeds", "1", "--data_cache_dir", models["root"] / "lm_cache",
            "--learning_rate", "1e-3", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm",
            "--per_device_eval_batch_size", "4"]
    for out, extra in ((tmp_path / "ddp", []), (tmp_path / "fsdp", FSDP)):
        results = launch.run_processes([*argv, *extra, "--per_device_train_batch_size", "4", "--output_dir", out], 2)
        for code, log in results:
            assert code == 0, log[-3000:]
    assert_same_result(str(tmp_path / "ddp"), str(tmp_path / "fsdp"), ["eval_results.json"])


def test_a_killed_sharded_run_resumes_exactly_and_on_another_process_count(toy, models, launch, glue_runs, tmp_path):
    """Killed at the start of step 3 (checkpoint-2 written at the step-2 evaluation), the same command
    ends exactly like the uninterrupted sharded run. The same checkpoint resumes on 1 process too: DCP
    reshards the 2 processes' shards (the global batch is then 8, not 16: the per-process batch is a flag
    of the run, so the runs differ from there on)."""
    argv = [*glue_flags(toy, models), *FSDP]
    two_processes(launch, argv, tmp_path / "run", kill=("step", 3), expect=-9)
    assert os.path.isdir(tmp_path / "run" / "checkpoint-2" / "sharded")
    shutil.copytree(tmp_path / "run", tmp_path / "one")
    log = two_processes(launch, argv, tmp_path / "run")
    assert "resumed from" in log and "checkpoint-2 at step 2" in log
    assert_same_run(glue_runs["fsdp"], str(tmp_path / "run"))
    log = one_process(launch, argv, tmp_path / "one", batch=8)
    assert "checkpoint-2 at step 2" in log
    # a finished sharded run, rerun on 1 process: resumed at its end, the same final model again
    shutil.copytree(glue_runs["fsdp"], tmp_path / "finished")
    one_process(launch, argv, tmp_path / "finished", batch=8)
    assert load_file(str(tmp_path / "finished" / "model.safetensors")).keys()
    for key, value in load_file(os.path.join(glue_runs["fsdp"], "model.safetensors")).items():
        assert torch.equal(load_file(str(tmp_path / "finished" / "model.safetensors"))[key], value), key


@pytest.mark.parametrize("extra, expected", [
    (["--train_teacher"], "--fsdp with --train_teacher (ProKT, LGTM) is not supported"),
    (["--train_teacher", "--use_lgtm"], "--fsdp with --train_teacher (ProKT, LGTM) is not supported"),
    (["--use_opdf"], "--fsdp with --use_opdf is not supported"),
    (["--cache_teacher_outputs"], "--cache_teacher_outputs with --fsdp is not supported"),
    (["--fp16"], "--fsdp with --fp16 is not supported"),
])
def test_what_cannot_be_sharded_is_refused_in_one_line(toy, models, tmp_path, capsys, extra, expected):
    import run_glue
    argv = [*glue_flags(toy, models)[1:], *FSDP, *extra, "--output_dir", tmp_path / "out"]
    assert run_glue.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {expected}"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, expected", [
    (["--fsdp", "zero3"], "--fsdp 'zero3': choose full_shard or shard_grad_op"),
    (["--fsdp_offload"], "--fsdp_offload/--fsdp_transformer_layer_cls_to_wrap configure --fsdp"),
])
def test_bad_fsdp_flags_are_refused_in_one_line(toy, models, tmp_path, capsys, extra, expected):
    import train_lm_distill
    argv = [*lm_flags(models)[1:], *extra, "--output_dir", tmp_path / "out"]
    assert train_lm_distill.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {expected}"), err


def test_blocks_are_the_models_own_unsplittable_layers(models):
    from transformers import AutoModelForCausalLM

    from distill.sharding import transformer_blocks
    gpt2 = AutoModelForCausalLM.from_pretrained(models["gpt2"])
    assert [type(b).__name__ for b in transformer_blocks(gpt2)] == ["GPT2Block", "GPT2Block"]
    assert transformer_blocks(gpt2, "GPT2Block") == list(gpt2.transformer.h)


def test_bf16_shard_grad_op_and_offload_train_in_float32_losses(toy, models, launch, glue_runs, tmp_path):
    """--bf16 gathers the weights in bf16 and reduces gradients and outputs in float32; shard_grad_op
    keeps the gathered weights to the backward; --fsdp_offload keeps the shards on the CPU. The losses stay
    near the float32 run's (bf16 has 8 bits of mantissa), the saved model is float32."""
    argv = [*glue_flags(toy, models), "--fsdp", "shard_grad_op", "--fsdp_offload", "--bf16"]
    two_processes(launch, argv, tmp_path / "bf16")
    logs = [json.load(open(os.path.join(d, "trainer_state.json")))["log_history"]
            for d in (glue_runs["fsdp"], tmp_path / "bf16")]
    losses = [[e["loss/total"] for e in log if "loss/total" in e] for log in logs]
    assert len(losses[1]) == 3 and losses[1] == pytest.approx(losses[0], rel=0.05)
    assert {v.dtype for v in load_file(str(tmp_path / "bf16" / "model.safetensors")).values()} == {torch.float32}


def test_fused_output_layers_under_bf16_shard_grad_op_and_offload(models, launch, tmp_path):
    """The fused LM loss reads the sharded models' output layers (the student's root unit gathered until its
    backward, the teacher's weight gathered for the loss) under the other sharding choices too, in bf16.
    Against the same run scoring the models' own logits: those are bf16 products (the output layer inside
    the bf16 forward) where the fused loss projects the float32 hidden states in float32, so the logged
    losses agree to bf16's rounding (2⁻⁸ relative per logit), not to float32's."""
    argv = [*lm_flags(models, "--kd_loss", "jsd", "--temperature", "2", "--kd_ratio", "0.5"),
            "--fsdp", "shard_grad_op", "--fsdp_offload", "--bf16"]
    log = two_processes(launch, argv, tmp_path / "fused")
    assert "fused output layers" in log
    assert "fused output layers" not in two_processes(launch, [*argv, "--no_fused_output_layer"], tmp_path / "logits")
    logs = [json.load(open(tmp_path / d / "trainer_state.json"))["log_history"] for d in ("fused", "logits")]
    for key in ("loss/total", "loss/kd", "loss/clm"):
        values = [[e[key] for e in log if key in e] for log in logs]
        assert len(values[0]) == 3 and values[0] == pytest.approx(values[1], rel=1e-2), key
