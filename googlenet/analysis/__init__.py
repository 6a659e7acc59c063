"""Measurements of a model: test-set evaluation, class selectivity per branch, the per-epoch numbers of a
run (:mod:`.epoch_measures`, which the Timeline draws) and the per-layer summary."""
