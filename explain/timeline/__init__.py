"""Watch a run learn: per-epoch numbers and the probe's branch atlas (:mod:`.run_timeline`), their figures,
and two runs side by side (:mod:`.compare_runs`)."""
