"""``python -m explain.trust``: the trust checks from the command line, for one image or many.

One image and one method write the report's JSON object (:meth:`TrustReport.to_json`); several
images or methods write ``{"reports": [...], "summary": {...}}``, whose summary counts how often
each method's deletion AUC beats each random map's (and the one of its own resolution,
``random_baseline``) and how often Guided Grad-CAM's maps stay more
similar than saliency's after full randomisation (Adebayo et al.'s ordering).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from explain.explorer import Explorer
from explain.images import ImageError
from explain.trust.faithfulness import RANDOM_DRAWS, RANDOM_DRAWS_LARGE
from explain.trust.report import BASELINE_NAMES, BASELINES, METHODS, TrustReport, trust_report
from googlenet.weights import load_model

__all__ = ["run", "summarize"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m explain.trust",
        description="Sanity checks (Adebayo et al. 2018) and faithfulness scores (deletion/insertion, ROAD) for an attribution map.",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (any format PIL reads)")
    p.add_argument(
        "--model", default="auto", help="weights as load_model takes them: bundled, imagenet, random, auto or a .safetensors path"
    )
    p.add_argument("--method", default="saliency", help=f"one of {', '.join(METHODS)}, several joined by commas, or 'all'")
    p.add_argument("--target", default=None, help="class index or name (default: the top class)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the scores as JSON here")
    p.add_argument("--cifar", default=None, metavar="DIR", help="also check CIFAR-10 test images from this folder")
    p.add_argument("--start", type=int, default=0, help="--cifar: index of the first test image")
    p.add_argument("--count", type=int, default=10, help="--cifar: how many test images")
    p.add_argument(
        "--layer", default=None, help="Grad-CAM / Guided Grad-CAM layer (default inception5b for both, the Grad-CAM paper's last block)"
    )
    p.add_argument("--steps", type=int, default=32, help="deletion/insertion points after 0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--random-draws",
        type=int,
        default=None,
        help=f"random maps per baseline, curves averaged (default {RANDOM_DRAWS}; {RANDOM_DRAWS_LARGE} above 64×64 px)",
    )
    p.add_argument(
        "--randomized-target", choices=("predicted", "fixed"), default="predicted",
        help="class a randomised model explains: its own top class (Adebayo et al.'s code) or the original target (quantus)",
    )  # fmt: skip
    p.add_argument("--no-cascading", action="store_true", help="skip the cascading randomisation")
    p.add_argument("--no-independent", action="store_true", help="skip the one-layer-at-a-time randomisation")
    p.add_argument("--no-road", action="store_true", help="skip ROAD")
    p.add_argument("--no-contributions", action="store_true", help="skip the 36 + 9 knock-outs")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true", help="one line per report instead of the tables")
    return p


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    methods = list(METHODS) if args.method == "all" else [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        print(f"error: unknown method {unknown or args.method!r}; expected {', '.join(METHODS)} or 'all'", file=sys.stderr)
        return 2
    try:
        inputs = _inputs(args)
        loaded = load_model(args.model, device=args.device)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    explorer = Explorer(loaded, cache_size=4)
    reports: list[dict[str, Any]] = []
    for name, image in inputs:
        for method in methods:
            try:
                report = trust_report(
                    explorer, image, method, args.target, cascading=not args.no_cascading, independent=not args.no_independent, road=not args.no_road,
                    contributions=not args.no_contributions, steps=args.steps, seed=args.seed, random_draws=args.random_draws, layer=args.layer,
                    randomized_target=args.randomized_target,
                )  # fmt: skip
            except (ImageError, ValueError) as error:
                print(f"error: {name}: {error}", file=sys.stderr)
                return 2
            if args.quiet or len(inputs) * len(methods) > 1:
                print(_one_line(name, report))
            else:
                print(_table(name, report))
            reports.append({"image": name} | report.to_json())
    summary = summarize(reports)
    if len(reports) > 1:
        for line in _summary_lines(summary):
            print(line)
    if args.json:
        out = reports[0] if len(reports) == 1 else {"reports": reports, "summary": summary}
        Path(args.json).write_text(json.dumps(out, indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


def _inputs(args) -> list[tuple[str, object]]:
    inputs: list[tuple[str, object]] = [(str(p), p) for p in args.images]
    if args.cifar:
        from googlenet.datasets.cifar10 import read_cifar10

        data = read_cifar10(args.cifar)
        n = len(data.test_labels)
        if not 0 <= args.start < n or args.count < 1:
            raise ValueError(f"--start {args.start} --count {args.count} is outside the {n} test images")
        for i in range(args.start, min(n, args.start + args.count)):
            inputs.append((f"cifar-test-{i}", data.test_images[i]))
    if not inputs:
        raise ValueError("name at least one IMAGE, or --cifar DIR for CIFAR-10 test images")
    return inputs


def _fmt(v: float | None) -> str:
    return "   n/a" if v is None or not math.isfinite(v) else f"{v:+.3f}"


def _table(name: str, report: TrustReport) -> str:
    lines = [f"{name}: {report.label} for “{report.target_name}” ({report.target}) on {report.model_name}, {report.seconds:.1f} s"]
    r = report.randomization
    if r is not None:
        lines.append(
            f"  {'randomised layer':<16} {'cascading: ρ|map|':>18} {'ρ signed':>9} {'SSIM':>7}   {'independent: ρ|map|':>20} {'ρ signed':>9} {'SSIM':>7}"
        )
        names = [s.layer for s in (r.cascading or r.independent)]
        for i, layer in enumerate(names):
            c = r.cascading[i] if r.cascading else None
            d = r.independent[i] if r.independent else None
            left = f"{_fmt(c.spearman_abs):>18} {_fmt(c.spearman):>9} {_fmt(c.ssim):>7}" if c else " " * 36
            right = f"{_fmt(d.spearman_abs):>20} {_fmt(d.spearman):>9} {_fmt(d.ssim):>7}" if d else ""
            lines.append(f"  {layer:<16} {left}   {right}")
    lines.append(f"  {'check':<44} {'this map':>9} {'pixels':>9} {'regions':>9} {'centre':>9}  reading")
    for row in report.records():
        values = [row["this map"], *(row[BASELINE_NAMES[b]] for b in BASELINES)]
        lines.append(
            f"  {row['check']:<44} "
            + " ".join(f"{_fmt(v):>9}" for v in values)
            + f"  {row['reading']}"
            + (f"  → {row['decision']}" if row.get("decision") else "")
        )
    lines.append(f"  verdict: {report.verdict.line}")
    return "\n".join(lines)


def _one_line(name: str, report: TrustReport) -> str:
    parts = [f"{name} {report.method} target={report.target_name}"]
    if report.randomization is not None and report.randomization.cascading:
        parts.append(f"cascade_rho_abs={_fmt(report.randomization.cascading[-1].spearman_abs)}")
    if report.faithfulness is not None:
        d = report.faithfulness.deletion
        parts.append(f"deletion={d['map'].auc:.3f} random={d['random'].auc:.3f} regions={d['random_regions'].auc:.3f}")
        parts.append(f"beats_own_random={report.faithfulness.beats_random()}")
    if report.contributions is not None:
        parts.append(f"contrib_rho={_fmt(report.contributions.spearman)}")
    parts.append(f"{report.seconds:.1f}s")
    return "  ".join(parts)


def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over reports (as :meth:`TrustReport.to_json` gives them, with an ``image`` key)."""
    per_method: dict[str, dict[str, Any]] = {}
    final: dict[tuple[str, str], float] = {}
    for r in reports:
        counts = {f"{kind}_beats_{b}": 0 for kind in ("deletion", "insertion") for b in (*BASELINES, "random_baseline")}
        m = per_method.setdefault(r["method"], {"images": 0} | counts | {"final_spearman_abs": []})
        m["images"] += 1
        if "deletion_auc" in r:
            for b in BASELINES:
                m[f"deletion_beats_{b}"] += int(r["deletion_auc"] < r[f"{b}_deletion_auc"])
                m[f"insertion_beats_{b}"] += int(r["insertion_auc"] > r[f"{b}_insertion_auc"])
            for kind in ("deletion", "insertion"):  # against the random map of the method's own resolution
                m[f"{kind}_beats_random_baseline"] += int(r["beats_random_baseline"][kind])
        cascade = r.get("randomization", {}).get("cascading") or []
        if cascade and cascade[-1]["spearman_abs"] is not None:
            m["final_spearman_abs"].append(cascade[-1]["spearman_abs"])
            final[(r["image"], r["method"])] = cascade[-1]["spearman_abs"]
    for m in per_method.values():
        values = m.pop("final_spearman_abs")
        m["mean_final_spearman_abs"] = round(sum(values) / len(values), 4) if values else None
    summary: dict[str, Any] = {"methods": per_method}
    pairs = [
        (final[(img, "guided_gradcam")], final[(img, "saliency")])
        for img, method in final
        if method == "saliency" and (img, "guided_gradcam") in final
    ]
    if pairs:
        summary["guided_gradcam_above_saliency"] = {"images": len(pairs), "count": sum(g > s for g, s in pairs)}
    return summary


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for method, m in summary["methods"].items():
        counts = " ".join(f"{k}={v}" for k, v in m.items() if "_beats_" in k)
        lines.append(f"summary_{method}: images={m['images']} {counts} mean_final_spearman_abs={m['mean_final_spearman_abs']}")
    if "guided_gradcam_above_saliency" in summary:
        g = summary["guided_gradcam_above_saliency"]
        lines.append(f"guided_gradcam_above_saliency={g['count']}/{g['images']}")
    return lines


if __name__ == "__main__":
    sys.exit(run())
