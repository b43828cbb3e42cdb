"""train_lm_distill.py in the DistilBERT pipeline's own mode (--dump_path, lm/pipeline.py): that pipeline's
README command with its flags unchanged (only model and data paths made local, a tiny budget added), its
one-sequence-per-line data, the files its users load from the dump path, and its refusals."""
from __future__ import annotations

import json
import os
import pickle
import random

import pytest
import torch
from conftest import crash_at_step
from safetensors.torch import load_file

import train_lm_distill
from distill.toy import build_tokenizer, toy_sentence

N_LINES = 200
BUDGET = ["--n_epoch", "2", "--batch_size", "16", "--max_seq_length", "32", "--disable_tqdm"]


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def tiny_bert(layers: int, seed: int, vocab: int):
    from transformers import BertConfig, BertForMaskedLM
    torch.manual_seed(seed)
    return BertForMaskedLM(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=64)).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A teacher dir (architecture and tokenizer), other, 'trained' teacher weights as a state-dict .pth, a
    pretrained student dir and a dump.txt of one toy sentence per line."""
    root = tmp_path_factory.mktemp("pipeline")
    tok = build_tokenizer(str(root / "tok"))
    for name, layers, seed in (("teacher", 2, 1), ("student", 1, 2)):
        tiny_bert(layers, seed, len(tok)).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    torch.save(tiny_bert(2, 3, len(tok)).state_dict(), root / "trained_teacher.pth")
    rng = random.Random(0)
    lines = [toy_sentence(rng)[0] for _ in range(N_LINES)]
    assert max(len(ids) for ids in tok(lines)["input_ids"]) <= 32  # no line is cut: one sequence each
    (root / "dump.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return {"root": root, "tok": tok}


def seed_command(f, dump, *extra):
    """The pipeline README's command, only the paths replaced, plus a tiny budget."""
    r = f["root"]
    return ["--student_name", r / "student", "--teacher_name", r / "teacher", "--teacher_pretrained",
            r / "trained_teacher.pth", "--alpha_ce", "5.0", "--alpha_mlm", "2.0", "--alpha_cos", "1.0", "--alpha_clm",
            "0.0", "--mlm", "--dump_path", dump, "--data_file", r / "dump.txt", "--force", "--n_gpu", "0", *BUDGET,
            *extra]


def run(argv) -> int:
    return train_lm_distill.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def first_run(files):
    """The seed command's run, with the teacher it distilled from captured."""
    captured = {}
    real = train_lm_distill.load_teacher

    def capture(*args, **kwargs):
        captured["teacher"] = real(*args, **kwargs)
        return captured["teacher"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_lm_distill, "load_teacher", capture)
        assert run(seed_command(files, files["root"] / "train1")) == 0
    return {"dump": files["root"] / "train1", "teacher": captured["teacher"]}


def pth_teacher(files):
    """The teacher the seed command asks for: --teacher_name's architecture, --teacher_pretrained's weights."""
    model = tiny_bert(2, 0, len(files["tok"]))
    model.load_state_dict(torch.load(files["root"] / "trained_teacher.pth", weights_only=True))
    return model


def mlm_logits(model, tok):
    batch = tok(["the movie was great", "not bad at all really"], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_the_seed_command_leaves_the_pipelines_files(files, first_run):
    from transformers import AutoConfig, AutoModelForMaskedLM
    dump, tok = first_run["dump"], files["tok"]
    names = set(os.listdir(dump))
    assert {"checkpoint.pth", "config.json", "parameters.json", "logs", "teacher.data.npz", "teacher.token_counts.npy",
            "model.safetensors"} <= names
    assert {n for n in names if n.startswith("model_epoch_")} == {"model_epoch_0.pth", "model_epoch_1.pth"}
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(dump / "logs"))
    params = read_json(dump / "parameters.json")
    assert params["output_dir"] == str(dump) and params["alpha_ce"] == 5.0 and params["mlm"] is True
    assert params["teacher_pretrained"].endswith("trained_teacher.pth") and params["logging_dir"] == str(dump / "logs")

    # the pipeline users' loading snippet, strictly, gives the model our HF dir holds
    student = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(str(dump / "config.json")))
    student.load_state_dict(torch.load(dump / "checkpoint.pth", map_location="cpu", weights_only=True), strict=True)
    torch.testing.assert_close(mlm_logits(student, tok), mlm_logits(AutoModelForMaskedLM.from_pretrained(dump), tok))

    # model_epoch_<n>.pth: after epoch n (0-based), i.e. the weights of that epoch's checkpoint
    steps = sorted(int(n.split("-")[1]) for n in names if n.startswith("checkpoint-"))
    assert len(steps) == 2
    for epoch, step in enumerate(steps):
        saved = torch.load(dump / f"model_epoch_{epoch}.pth", weights_only=True)
        for key, value in load_file(dump / f"checkpoint-{step}" / "model.safetensors").items():
            assert torch.equal(saved[key], value), (epoch, key)

    # one training sequence per non-empty line, every line trains (the pipeline's command only trains);
    # the record's command reruns in the pipeline's mode
    assert read_json(dump / "train_results.json")["train_samples"] == N_LINES
    assert "eval_results.json" not in names and params["do_eval"] is False
    command = read_json(dump / "run_args.json")["command"]
    assert f"--dump_path {dump}" in command and "--output_dir" not in command
    assert "--logging_dir" not in command  # (rerun into another dump, it logs into that dump)


def test_the_teacher_has_the_weights_of_teacher_pretrained(files, first_run):
    from transformers import AutoModelForMaskedLM
    used = mlm_logits(first_run["teacher"], files["tok"])
    torch.testing.assert_close(used, mlm_logits(pth_teacher(files), files["tok"]), rtol=0, atol=0)
    dir_logits = mlm_logits(AutoModelForMaskedLM.from_pretrained(files["root"] / "teacher"), files["tok"])
    assert not torch.allclose(used, dir_logits)


def test_a_later_run_reuses_the_tokenised_data_and_counts_and_trains_identically(files, first_run, monkeypatch):
    import lm.data

    def no_tokenising(*args, **kwargs):
        raise AssertionError("re-tokenised although --preprocessed_data_file holds the data")
    monkeypatch.setattr(lm.data, "tokenize_records", no_tokenising)
    first, dump = first_run["dump"], files["root"] / "train2"
    assert run(seed_command(files, dump, "--preprocessed_data_file", first / "teacher.data.npz",
                            "--preprocessed_token_counts", first / "teacher.token_counts.npy")) == 0
    assert not {"teacher.data.npz", "teacher.token_counts.npy"} & set(os.listdir(dump))  # read where they are
    reused, made = (torch.load(d / "checkpoint.pth", weights_only=True) for d in (dump, first))
    assert reused.keys() == made.keys() and all(torch.equal(reused[k], made[k]) for k in made)
    assert (read_json(dump / "trainer_state.json")["log_history"]
            == read_json(first / "trainer_state.json")["log_history"])


def test_a_resumed_run_neither_loses_nor_doubles_the_epoch_files(files, first_run, tmp_path, monkeypatch):
    argv = [str(a) for a in seed_command(files, tmp_path / "resumed")]
    crash_at_step(monkeypatch, train_lm_distill.main, argv, step=20)  # in epoch 1 (12 steps an epoch)
    assert {"model_epoch_0.pth", "checkpoint.pth"} <= set(os.listdir(tmp_path / "resumed"))
    assert run([a for a in argv if a != "--force"]) == 0  # the same command without --force resumes
    for name in ("model_epoch_0.pth", "model_epoch_1.pth", "checkpoint.pth"):
        resumed, full = (torch.load(d / name, weights_only=True) for d in (tmp_path / "resumed", first_run["dump"]))
        assert all(torch.equal(resumed[k], full[k]) for k in full), name
    epoch_files = {n for n in os.listdir(tmp_path / "resumed") if n.startswith("model_epoch_")}
    assert epoch_files == {"model_epoch_0.pth", "model_epoch_1.pth"}


def test_force_removes_an_earlier_runs_pipeline_files_but_keeps_the_data_file_it_reads(files, first_run, tmp_path):
    dump = tmp_path / "dump"
    (dump / "logs").mkdir(parents=True)
    gone = ["model_epoch_5.pth", "other.data.npz", "other.token_counts.npy", "logs/events.out.tfevents.old"]
    rewritten = ["checkpoint.pth", "parameters.json"]
    for name in gone + rewritten:
        (dump / name).write_bytes(b"an earlier run's")
    mine = dump / "mine.data.npz"  # the user's reuse of data kept in this dump: read before the clean-up
    mine.write_bytes((first_run["dump"] / "teacher.data.npz").read_bytes())
    assert run(seed_command(files, dump, "--preprocessed_data_file", mine)) == 0
    assert not [name for name in gone if os.path.exists(dump / name)]
    assert all((dump / name).read_bytes() != b"an earlier run's" for name in rewritten)
    assert mine.read_bytes() == (first_run["dump"] / "teacher.data.npz").read_bytes()


def refusal(capsys, argv) -> str:
    code = run(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err and err[-1].startswith("error: "), err
    return err[-1]


def teacher_state(files, change):
    state = torch.load(files["root"] / "trained_teacher.pth", weights_only=True)
    change(state)
    return state


@pytest.mark.parametrize("name, change, words", [
    ("missing", lambda s: s.pop("bert.encoder.layer.1.output.dense.weight"),
     ["missing ['bert.encoder.layer.1.output.dense.weight']"]),
    ("unexpected", lambda s: s.update({"classifier.weight": torch.zeros(2, 32)}), ["unexpected ['classifier.weight']"]),
    ("shape", lambda s: s.update({"cls.predictions.bias": torch.zeros(3)}), ["other shapes", "(3,) vs"]),
])
def test_teacher_weights_that_do_not_fit_are_refused(files, tmp_path, capsys, name, change, words):
    path = tmp_path / f"{name}.pth"
    torch.save(teacher_state(files, change), path)
    message = refusal(capsys, seed_command(files, tmp_path / "out", "--teacher_pretrained", path))
    assert f"--teacher_pretrained {path} does not fit --teacher_name" in message
    assert all(w in message for w in words), message
    assert not os.path.exists(tmp_path / "out")


def test_tied_and_buffer_keys_may_be_absent_or_extra_and_a_pipeline_dump_dir_is_read(files, tmp_path):
    from types import SimpleNamespace

    from lm.models import load_teacher
    state = teacher_state(files, lambda s: s.pop("cls.predictions.decoder.weight"))  # tied to the word embeddings
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]  # a buffer older transformers saved
    old_dump = tmp_path / "train0"  # what the pipeline left: its student's config and checkpoint.pth
    old_dump.mkdir()
    torch.save(state, old_dump / "checkpoint.pth")
    (old_dump / "config.json").write_text("{}")
    args = SimpleNamespace(teacher_model=str(files["root"] / "teacher"), teacher_pretrained=str(old_dump),
                           cache_dir=None, trust_remote_code=False)
    torch.testing.assert_close(mlm_logits(load_teacher(args, mlm=True), files["tok"]),
                               mlm_logits(pth_teacher(files), files["tok"]), rtol=0, atol=0)
    # a state dict saved from a DDP/DataParallel wrapper: every key prefixed with "module."
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pth")
    args.teacher_pretrained = str(tmp_path / "ddp.pth")
    torch.testing.assert_close(mlm_logits(load_teacher(args, mlm=True), files["tok"]),
                               mlm_logits(pth_teacher(files), files["tok"]), rtol=0, atol=0)


def test_pickles_are_refused_unread(files, first_run, tmp_path, capsys):
    whole_model = tmp_path / "teacher_model.pt"
    torch.save(tiny_bert(2, 0, len(files["tok"])), whole_model)  # a pickled model: loading it runs code
    message = refusal(capsys, seed_command(files, tmp_path / "a", "--teacher_pretrained", whole_model))
    assert "pickled Python objects other than tensors" in message and "could run code" in message

    counts = tmp_path / "teacher.token_counts.pickle"  # the old pipeline's token counts
    counts.write_bytes(pickle.dumps([1] * len(files["tok"]), protocol=4))
    message = refusal(capsys, seed_command(files, tmp_path / "b", "--preprocessed_token_counts", counts))
    assert message == (f"error: --preprocessed_token_counts {counts} is a pickle, which can run code when loaded; "
                       f"rerun without it and the counts are recomputed, then reuse "
                       f"{tmp_path / 'b' / 'teacher.token_counts.npy'}")
    data = tmp_path / "binarised"  # its data, under any name
    data.write_bytes(pickle.dumps([[0, 1, 2]], protocol=4))
    assert "is a pickle" in refusal(capsys, seed_command(files, tmp_path / "c", "--preprocessed_data_file", data))
    assert not any(os.path.exists(tmp_path / d) for d in "abc")


def test_one_sequence_per_line_outside_the_pipelines_mode_says_how_to_read_it(files, tmp_path, capsys):
    argv = [a if a != "--dump_path" else "--output_dir" for a in map(str, seed_command(files, tmp_path / "out"))]
    message = refusal(capsys, argv)
    assert "dump.txt is one document" in message and "pass --dump_path instead of --output_dir" in message
