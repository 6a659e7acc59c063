"""Issue 24.1: the trust verdict takes one decision per check from the table's own numbers and
thresholds, and words one sentence per decision; each band and each baseline walked to its sentence."""

import math

import pytest
import torch

from explain.trust.faithfulness import BASELINES, Curve
from explain.trust.report import Faithfulness, Randomization, Similarity, TrustReport, _verdict
from explain.trust.verdict import CHANGED_BELOW, UNCHANGED_FROM, Band, faithfulness_decision, randomization_decision

RHO_BANDS = [(0.1, Band.PASS, "changed completely"), (0.41, Band.PARTLY, "changed only partly"), (0.50, Band.PARTLY, "changed only partly")]
RHO_BANDS += [(UNCHANGED_FROM, Band.FAIL, "barely changed"), (0.9, Band.FAIL, "barely changed"), (math.nan, Band.PASS, "went flat")]
RHO_BANDS += [(CHANGED_BELOW, Band.PARTLY, "changed only partly")]


@pytest.mark.parametrize("rho, band, words", RHO_BANDS)
def test_each_randomisation_band_has_its_own_sentence(rho, band, words):
    decision = randomization_decision(rho)
    assert decision.band is band and words in decision.sentence
    assert "stayed similar" not in decision.sentence  # the old headline for the middle band
    assert decision.table_cell.startswith(band.value)


# (deletion, insertion) of the map against the baseline's (0.5, 0.5): lower deletion and higher insertion beat it
FAITH_BANDS = [((0.2, 0.8), Band.PASS), ((0.2, 0.3), Band.PARTLY), ((0.7, 0.8), Band.PARTLY), ((0.7, 0.3), Band.FAIL)]


@pytest.mark.parametrize("baseline, words", [("random", "random pixels"), ("random_regions", "random regions on the 8×8 grid")])
@pytest.mark.parametrize("areas, band", FAITH_BANDS)
def test_each_faithfulness_band_and_baseline_has_its_sentence(baseline, words, areas, band):
    decision = faithfulness_decision(baseline, areas[0], 0.5, areas[1], 0.5, grid=(8, 8))
    assert decision.band is band and decision.baseline == baseline
    assert words in decision.sentence
    other = "random regions" if baseline == "random" else "random pixels"
    assert other not in decision.sentence  # held against its own baseline only: one decision, not two
    if band is Band.PARTLY:
        assert ("removing the pixels" in decision.sentence) == (areas[0] < 0.5) and "but" in decision.sentence
    assert decision.table_cell == f"{band.value} (vs {words})"


def _curves(kind: str, aucs: dict[str, float]) -> dict[str, Curve]:
    return {name: Curve(name, kind, torch.zeros(2), torch.zeros(2), auc) for name, auc in aucs.items()}


def _report(rho: float, deletion: dict, insertion: dict, centre: float = 0.0) -> TrustReport:
    similarity = Similarity("conv1", rho, rho, 0.5, torch.zeros(4, 4))
    randomization = Randomization(torch.zeros(4, 4), (similarity,), (), 0, "predicted", centre)
    faith = Faithfulness(_curves("deletion", deletion), _curves("insertion", insertion), None, 0.9, "mean", 1.0, "random", (8, 8), 8)
    verdict = _verdict("integrated_gradients", randomization, faith)
    return TrustReport(
        "integrated_gradients", "Integrated Gradients", 3, "cat", "m", None, torch.zeros(4, 4), randomization, faith, None, verdict, 1.0
    )


def test_the_issue_s_integrated_gradients_case_reads_as_its_table():
    """ρ = 0.50 with a centre-biased map; deletion beats random regions but not random pixels, IG's own baseline."""
    report = _report(
        0.50, deletion={"map": 0.30, "random": 0.25, "random_regions": 0.40, "centre": 0.35},
        insertion={"map": 0.60, "random": 0.65, "random_regions": 0.50, "centre": 0.55}, centre=0.7,
    )  # fmt: skip
    line = report.verdict.line
    assert "changed only partly" in line and "stayed similar" not in line
    assert "no faster than with random pixels" in line and "random regions" not in line
    assert line.count(".") == 2  # one sentence per decision
    rows = {row["check"]: row for row in report.records()}
    assert rows["Randomisation, cascading to conv1: ρ(|map|)"]["decision"].startswith("partly")
    assert rows["Deletion AUC"]["decision"] == rows["Insertion AUC"]["decision"] == "fail (vs random pixels)"
    assert report.to_json()["verdict"] | {"line": None} == {
        "randomization": "partly", "faithfulness": "fail", "faithfulness_baseline": "random", "line": None,
    }  # fmt: skip
    assert any("centre blob" in d for d in report.verdict.details)  # the caveat is a detail, not a second verdict
    assert set(BASELINES) == {"random", "random_regions", "centre"}
