"""IMDB sentiment (Maas et al. 2011) for run_imdb_w_distillation.py: data, dev split, long-review truncation."""
