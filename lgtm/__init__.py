"""Teachers that learn while they teach: ProKT (Shi et al. 2021) and LGTM (Ren et al., ACL 2023).

- args.py        the flags (`--train_teacher`, `--use_lgtm`, `--lgtm_*`), named as in the LGTM paper's script
- objectives.py  the teacher's own loss L_T (pulled toward the student, kept right on the labels)
- teachers.py    the two teacher strategies the shared trainer calls once per optimizer step
- virtual_step.py  the student's would-be AdamW update, computed without making it
- influence.py   the distillation influence, by finite difference or exactly
- quiz.py        held-out quiz data and its per-step batches
- build.py       wiring for the entry scripts (loading, head zeroing, quiz split)
"""
