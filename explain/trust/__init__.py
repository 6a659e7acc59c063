"""Can I trust this map? The randomisation checks and the full report (:mod:`.report`), deletion /
insertion / ROAD (:mod:`.faithfulness`), the metrics they share, their figures and the command line
(``python -m explain.trust``, :mod:`.cli`)."""
