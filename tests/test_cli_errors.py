"""Bad input: one clear line naming the problem and the fix, exit status 2, nothing overwritten."""
from __future__ import annotations

import os

from conftest import FIXTURES

import run_glue


def run_err(capsys, *argv) -> str:
    code = run_glue.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_teacher_learning_flags_refuse_nonsense_combinations(toy, tmp_path, capsys):
    base = ["--model_name_or_path", toy["student"], "--task_name", "sst2", "--data_dir", toy["task"], "--do_train",
            "--output_dir", tmp_path / "o"]
    teacher = ["--teacher_model", toy["teacher"]]
    assert "needs --train_teacher" in run_err(capsys, *base, *teacher, "--use_lgtm")
    assert "pass --teacher_model" in run_err(capsys, *base, "--train_teacher")
    assert "pass --teacher_model" in run_err(capsys, *base, "--train_teacher", "--use_lgtm")
    assert "--init_classifier_to_zero" in run_err(capsys, *base, *teacher, "--init_classifier_to_zero")
    assert "only applies to LGTM" in run_err(capsys, *base, *teacher, "--train_teacher", "--lgtm_exact")
    assert "--t_learning_rate only applies" in run_err(capsys, *base, *teacher, "--t_learning_rate", "1e-4")
    assert "student_kd or teacher_aux" in run_err(capsys, *base, *teacher, "--train_teacher", "--use_lgtm",
                                                  "--lgtm_influence", "both")
    assert "train or validation" in run_err(capsys, *base, *teacher, "--train_teacher", "--use_lgtm",
                                            "--lgtm_quiz_source", "test")
    assert "--lgtm_quiz_fraction" in run_err(capsys, *base, *teacher, "--train_teacher", "--use_lgtm",
                                             "--lgtm_quiz_fraction", "1.5")
    assert "--alpha_kd 0" in run_err(capsys, *base, *teacher, "--train_teacher", "--use_lgtm", "--alpha_kd", "0")
    assert not os.path.exists(tmp_path / "o")  # refused before anything was written


def test_opdf_flags_refuse_nonsense(toy, tmp_path, capsys):
    base = ["--model_name_or_path", toy["student"], "--task_name", "sst2", "--data_dir", toy["task"], "--do_train",
            "--output_dir", tmp_path / "o"]
    opdf = [*base, "--teacher_model", toy["teacher"], "--use_opdf"]
    assert "add --use_opdf" in run_err(capsys, *base, "--mpo_truncate", "8")
    assert "add --use_opdf" in run_err(capsys, *base, "--opdf_layer_map", "0,1")
    assert "--mpo_truncate must be >= 1" in run_err(capsys, *opdf, "--mpo_truncate", "0")
    assert "--opdf_align_weight must be >= 0" in run_err(capsys, *opdf, "--opdf_align_weight", "-1")
    assert "positive factors" in run_err(capsys, *opdf, "--mpo_input_shape", "8,x")
    assert "different numbers of cores" in run_err(capsys, *opdf, "--mpo_input_shape", "8,4",
                                                   "--mpo_output_shape", "8,1,4")
    assert "unknown --mpo_targets" in run_err(capsys, *opdf, "--mpo_targets", "query,gate")
    assert "factors no dimension" in run_err(capsys, *opdf, "--mpo_input_shape", "8,2")  # 16: no such layer
    assert "one teacher layer" in run_err(capsys, *opdf, "--opdf_layer_map", "0,9")
    assert not os.path.exists(tmp_path / "o")


def test_conflicting_and_missing_flags(toy, tmp_path, capsys):
    base = ["--model_name_or_path", toy["teacher4"], "--task_name", "sst2", "--data_dir", toy["task"],
            "--output_dir", tmp_path / "o"]
    assert "--num_layers and --student_layers" in run_err(capsys, *base, "--do_train", "--num_layers", "2",
                                                          "--student_layers", "0,1")
    assert "--fp16" in run_err(capsys, *base, "--do_train", "--fp16", "--bf16")
    assert "cosine" in run_err(capsys, *base, "--do_train", "--lr_scheduler_type", "cosinus")
    assert "unknown --task_name" in run_err(capsys, *base[:2], "--task_name", "sst3", "--data_dir", toy["task"],
                                           "--do_train", "--output_dir", tmp_path / "o")
    assert "max_seq_length 4096" in run_err(capsys, *base, "--do_eval", "--max_seq_length", "4096")


def test_wrong_files_and_labels(toy, tmp_path, capsys):
    base = ["--model_name_or_path", toy["student"], "--do_train", "--output_dir", tmp_path / "o"]
    line = run_err(capsys, *base, "--task_name", "mnli", "--data_dir", toy["task"])  # SST-2 folder as MNLI
    assert "columns" in line and "right file" in line
    bad = tmp_path / "train.csv"
    bad.write_text("sentence,label\ngood film,positive\nbad film,maybe\n")
    line = run_err(capsys, *base, "--task_name", "sst2", "--train_file", bad)
    assert "'maybe'" in line and "train.csv" in line
    assert "not a folder" in run_err(capsys, *base, "--task_name", "sst2", "--data_dir", tmp_path / "nope")


def test_teacher_pairing_is_checked(toy, tmp_path, capsys):
    mnli_teacher = tmp_path / "mnli_teacher"
    assert run_glue.main(["--model_name_or_path", toy["teacher"], "--task_name", "mnli", "--data_dir",
                          os.path.join(FIXTURES, "MNLI"), "--do_train", "--max_steps", "1",
                          "--output_dir", str(mnli_teacher), "--disable_tqdm", "--report_to", "none"]) == 0
    line = run_err(capsys, "--model_name_or_path", toy["student"], "--teacher_model", mnli_teacher,
                   "--task_name", "sst2", "--data_dir", toy["task"], "--do_train", "--output_dir", tmp_path / "o")
    assert "3 outputs but the task has 2" in line


def test_non_empty_output_dir_is_not_overwritten(toy, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    line = run_err(capsys, "--model_name_or_path", toy["student"], "--task_name", "sst2", "--data_dir",
                   toy["task"], "--do_train", "--output_dir", out)
    assert "--overwrite_output_dir" in line
    assert (out / "notes.txt").read_text() == "precious" and os.listdir(out) == ["notes.txt"]


def test_corrupt_checkpoint_is_reported(toy, tmp_path, capsys):
    ckpt = tmp_path / "o" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    (ckpt / "training_state.pt").write_bytes(b"not a torch file")
    line = run_err(capsys, "--model_name_or_path", toy["student"], "--task_name", "sst2", "--data_dir",
                   toy["task"], "--do_train", "--output_dir", tmp_path / "o")
    assert "corrupt" in line and "checkpoint-3" in line


def test_missing_model_is_reported(tmp_path, capsys):
    line = run_err(capsys, "--model_name_or_path", tmp_path / "no_model", "--task_name", "sst2", "--data_dir",
                   os.path.join(FIXTURES, "SST-2"), "--do_train", "--output_dir", tmp_path / "o")
    assert "no_model" in line


def test_nan_loss_stops_the_run_before_the_weights_are_touched(toy, tmp_path, capsys, monkeypatch):
    from distill.objective import SequenceClassificationObjective
    real = SequenceClassificationObjective.loss_sums

    def nan_loss(self, batch, s, t):
        sums = real(self, batch, s, t)
        return {k: v * float("nan") for k, v in sums.items()}

    monkeypatch.setattr(SequenceClassificationObjective, "loss_sums", nan_loss)
    line = run_err(capsys, "--model_name_or_path", toy["student"], "--task_name", "sst2", "--data_dir",
                   toy["task"], "--do_train", "--output_dir", tmp_path / "o", "--disable_tqdm")
    assert "nan at step 1" in line and "--learning_rate" in line


def test_trainable_teacher_with_another_label_order_is_refused(toy, tmp_path, capsys):
    from transformers import AutoTokenizer, BertForSequenceClassification
    teacher_dir = tmp_path / "mnli_teacher_other_order"
    model = BertForSequenceClassification.from_pretrained(
        toy["teacher"], num_labels=3, id2label=dict(enumerate(["contradiction", "entailment", "neutral"])),
        ignore_mismatched_sizes=True)
    model.save_pretrained(teacher_dir)
    AutoTokenizer.from_pretrained(toy["teacher"]).save_pretrained(teacher_dir)
    line = run_err(capsys, "--model_name_or_path", toy["student"], "--teacher_model", teacher_dir, "--task_name",
                   "mnli", "--data_dir", os.path.join(FIXTURES, "MNLI"), "--do_train", "--train_teacher",
                   "--output_dir", tmp_path / "o")
    assert "label order" in line and "contradiction" in line
