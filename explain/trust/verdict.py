"""The trust panel's verdict: one typed decision per check, one sentence per decision (issue 24).

Each decision is taken once, here, from the numbers the scores table shows and the thresholds it
names, and the headline is worded from the decision alone, so the sentence cannot say more (or
other) than the table:

- **Randomisation** (Adebayo et al. 2018): ρ(|map|) after the full cascade. Below
  :data:`CHANGED_BELOW` passes, from :data:`UNCHANGED_FROM` fails, in between is "partly". A NaN ρ
  means the randomised model's map is flat (a rank correlation is undefined): nothing of the
  original survived, so it passes.
- **Deletion / insertion** (Petsiuk et al. 2018): the map's two areas held against *one* random
  map, the one of its own resolution (:func:`explain.trust.report.random_baseline`: random pixels for
  the per-pixel methods, random regions for Grad-CAM and occlusion). Both beat it: pass; one of
  the two: partly; neither: fail. The other random map is a table column, never a second verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

CHANGED_BELOW = 0.3
UNCHANGED_FROM = 0.6
# A map whose |values| rank like a centred blob (ρ ≥ 0.6) stays similar under any change that keeps
# a centre bias: the bundled model's Grad-CAM at inception5b (8×8 at 32 px) has ρ 0.80 with the
# blob and its fully randomised map 0.70, so their ρ of 0.60 says little about the weights.
CENTRE_BIASED = 0.6


class Band(StrEnum):
    PASS = "pass"
    PARTLY = "partly"
    FAIL = "fail"


RANDOMIZATION, FAITHFULNESS = "randomization", "faithfulness"


@dataclass(frozen=True)
class Decision:
    """One check's outcome and the numbers it was taken from.

    ``baseline`` names what the value was held against: ``"thresholds"`` for the randomisation
    test, ``"random"`` (random pixels) or ``"random_regions"`` for deletion and insertion."""

    check: str  # RANDOMIZATION | FAITHFULNESS
    band: Band
    baseline: str
    value: float  # ρ(|map|), or the map's deletion AUC
    against: float = math.nan  # the baseline's deletion AUC (faithfulness)
    insertion: float = math.nan  # the map's insertion AUC (faithfulness)
    insertion_against: float = math.nan
    grid: tuple[int, int] = (1, 1)  # the random regions' grid (faithfulness)

    @property
    def deletion_beats(self) -> bool:
        return self.value < self.against

    @property
    def insertion_beats(self) -> bool:
        return self.insertion > self.insertion_against

    @property
    def baseline_words(self) -> str:
        if self.baseline == "random_regions":
            return f"random regions on the {self.grid[0]}×{self.grid[1]} grid"
        return "random pixels" if self.baseline == "random" else "the thresholds"

    @property
    def sentence(self) -> str:
        """The plain-words sentence for this decision (no capital, no full stop)."""
        if self.check == RANDOMIZATION:
            if self.band is Band.PASS and not math.isfinite(self.value):
                return "the map went flat when the model's weights were randomised: it depends on what the model learned"
            return {
                Band.PASS: "the map changed completely when the model's weights were randomised: it depends on what the model learned",
                Band.PARTLY: "the map changed only partly when the model's weights were randomised: some of it comes from the image itself, "
                "not from what the model learned",
                Band.FAIL: "the map barely changed when the model's weights were randomised: it shows the image more than the model",
            }[self.band]
        words = self.baseline_words
        if self.band is Band.PASS:
            return f"removing the pixels it marks lowers the score faster, and putting them back raises it faster, than with {words}"
        if self.band is Band.FAIL:
            return f"removing or putting back the pixels it marks changes the score no faster than with {words}"
        done = "removing" if self.deletion_beats else "putting back"
        undone = "putting them back" if self.deletion_beats else "removing them"
        return f"{done} the pixels it marks changes the score faster than with {words}, but {undone} does not"

    @property
    def table_cell(self) -> str:
        """What the scores table's "decision" column says on this check's row(s)."""
        if self.check == RANDOMIZATION:
            return f"{self.band.value} (pass < {CHANGED_BELOW}, fail ≥ {UNCHANGED_FROM})"
        return f"{self.band.value} (vs {self.baseline_words})"


def randomization_decision(rho: float) -> Decision:
    """The randomisation test's band from ρ(|map|) after the full cascade."""
    if not math.isfinite(rho) or rho < CHANGED_BELOW:
        band = Band.PASS
    elif rho < UNCHANGED_FROM:
        band = Band.PARTLY
    else:
        band = Band.FAIL
    return Decision(RANDOMIZATION, band, "thresholds", rho)


def faithfulness_decision(
    baseline: str, deletion: float, deletion_baseline: float, insertion: float, insertion_baseline: float, grid: tuple[int, int] = (1, 1)
) -> Decision:
    """Deletion (lower is better) and insertion (higher is better) against ``baseline``'s areas."""
    beats = (deletion < deletion_baseline) + (insertion > insertion_baseline)
    band = (Band.FAIL, Band.PARTLY, Band.PASS)[beats]
    return Decision(FAITHFULNESS, band, baseline, deletion, deletion_baseline, insertion, insertion_baseline, grid)


@dataclass(frozen=True)
class Verdict:
    """The decisions of the checks that ran, and the headline worded from them."""

    randomization: Decision | None
    faithfulness: Decision | None
    details: tuple[str, ...] = ()

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return tuple(d for d in (self.randomization, self.faithfulness) if d is not None)

    @property
    def line(self) -> str:
        """One sentence per decision, in the order of the table."""
        sentences = [d.sentence for d in self.decisions] or ["no check was run"]
        return " ".join(s[0].upper() + s[1:] + "." for s in sentences)

    def state(self, check: str) -> str:
        decision = self.randomization if check == RANDOMIZATION else self.faithfulness
        return decision.band.value if decision is not None else "not run"
