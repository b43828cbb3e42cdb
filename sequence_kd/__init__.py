"""MiniLLM (reverse KL by policy gradient), SeqKD and generation-based evaluation."""
