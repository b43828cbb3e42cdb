"""TAKD (Mirzadeh et al. 2020): distillation in stages teacher -> TA_1 -> ... -> student, each stage a
full run of the chosen method whose best dev model teaches the next stage. `args.py` has the flags
and the layer rule for assistants given as layer counts, `chain.py` runs the stages (and resumes a
chain), `summary.py` writes the table that compares them."""
