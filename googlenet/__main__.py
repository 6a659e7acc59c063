"""Command line: ``python -m googlenet {summary,train,eval,export,import,timeline,channel,bench}``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import fields, replace
from pathlib import Path

import torch
from tqdm import tqdm

from googlenet.analysis.summary import summarize
from googlenet.datasets.cifar10 import DataError, download_cifar10
from googlenet.training.trainer import PRESETS, EndEvent, EpochEvent, StartEvent, StepEvent, TrainConfig, Trainer, TrainingError

from .model import GoogLeNet
from .weights import CheckpointError, WeightsUnavailable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m googlenet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("summary", help="per-layer shapes, parameters and multiply-adds vs the paper")
    p.add_argument("--stem", choices=("imagenet", "cifar"), default="imagenet")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--no-bn", action="store_true", help="the paper's plain network (5×5 branch3)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--input-size", type=int, default=None)

    p = commands.add_parser("train", help="train on CIFAR-10/100, an image folder or a zip (default preset: fast)")
    _add_train_arguments(p)

    p = commands.add_parser("eval", help="accuracy per head and per class, confusion matrices; last line accuracy=0.xxxx")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="CIFAR-10/100 folder, image folder or .zip (its test or val split)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", metavar="OUT", help="write accuracy, per-class results and confusion matrices as JSON")
    p.add_argument("--val-split", type=float, default=None, help="a folder without val/: the share held out (default: the run's)")
    p.add_argument("--seed", type=int, default=None, help="a folder without val/: the split's seed (default: the run's)")
    p.add_argument("--workers", type=int, default=None, help="decoding threads / streaming workers")
    _add_loading_arguments(p)

    p = commands.add_parser(
        "export", help="a compact copy of a checkpoint (fp16 by default) with its accuracy re-measured, or a torchvision state dict"
    )
    p.add_argument("checkpoint")
    p.add_argument("out", nargs="?", help="the compact copy (.safetensors); needs --data")
    p.add_argument("--data", help="CIFAR-10 folder whose test_batch measures the exported copy")
    p.add_argument("--fp32", action="store_true", help="keep float32 instead of float16")
    p.add_argument("--torchvision", metavar="OUT.pth", help="write a plain state dict for torchvision.models.googlenet instead")

    p = commands.add_parser(
        "import",
        help="a torchvision-layout GoogLeNet or lucent's InceptionV1 (.pth/.pt/.bin state dict or bare safetensors) as a checkpoint",
    )
    p.add_argument("file")
    p.add_argument("--out", required=True, help="the checkpoint to write (.safetensors)")
    p.add_argument("--classes", help="class names: a .txt file (one a line) or a .json list")
    p.add_argument(
        "--transform-input",
        action="store_true",
        help="the model was built with torchvision's transform_input=True (as googlenet(weights='DEFAULT') is)",
    )

    p = commands.add_parser("timeline", help="per epoch of a run: heads, branch selectivity / energy share, knock-out importance (cached)")
    p.add_argument("run", help="the run folder (runs/NAME) or its NAME")
    p.add_argument(
        "--data", help="the data whose test (or validation) split is measured: any --data the trainer reads (default: the run's own)"
    )
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the numbers to this JSON file")
    p.add_argument("--images", type=int, default=2000, help="the first N test images (default 2000)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="auto: bf16 where training would use it")
    p.add_argument("--device", default=None)

    p = commands.add_parser("channel", help="a channel in the other vocabulary: mixed4c:447 ↔ inception4c.branch3:63")
    p.add_argument("address", help="mixed4c:447, inception4c.branch3:63, mixed4c_5x5:63 or inception4c:447")
    p.add_argument(
        "--model", default="inceptionv1",
        help="whose layout: inceptionv1 (Lucid's, default), imagenet (torchvision's), paper, bundled, random or a .safetensors checkpoint",
    )  # fmt: skip

    p = commands.add_parser("bench", help="training speed vs the guide's pipeline (--inference: latency vs torchvision)")
    from bench.engine import add_arguments as add_bench_arguments

    add_bench_arguments(p)

    args = parser.parse_args(argv)
    try:
        if args.command == "summary":
            return _summary(args)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "export":
            return _export(args)
        if args.command == "import":
            return _import(args)
        if args.command == "timeline":
            return _timeline(args)
        if args.command == "channel":
            return _channel(args)
        from bench.engine import run as run_bench

        return run_bench(args)
    except (DataError, CheckpointError, TrainingError, WeightsUnavailable, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _summary(args) -> int:
    num_classes = args.num_classes or (1000 if args.stem == "imagenet" else 10)
    model = GoogLeNet(num_classes=num_classes, stem=args.stem, width=args.width, batch_norm=not args.no_bn)
    print(summarize(model, args.input_size).table())
    return 0


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", default="data",
        help="CIFAR-10 or CIFAR-100 python folder, an image folder (one subfolder per class, optionally under train/ and val/) or a .zip of one (default: ./data)",
    )  # fmt: skip
    p.add_argument(
        "--download", nargs="?", const="cifar10", choices=("cifar10", "cifar100"),
        help="download the full CIFAR-10 (or CIFAR-100) into --data first (MD5-checked)",
    )  # fmt: skip
    p.add_argument("--init", help="start from 'imagenet' (torchvision's weights, new heads) or a checkpoint")
    p.add_argument("--freeze-until", help="with --init: train only what follows this module (e.g. inception4e)")
    p.add_argument("--val-split", type=float, default=None, help="image folders without val/: share held out per class (0.2)")
    p.add_argument("--memory-budget", type=float, default=None, help="GiB the decoded pictures may take on the device (default: a quarter)")
    p.add_argument("--workers", type=int, default=None, help="decoding threads / streaming DataLoader workers")
    _add_loading_arguments(p)
    p.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    p.add_argument("--out", default=None, help="run folder, or a NAME under the runs folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    flags = {
        "epochs": int, "batch_size": int, "lr": float, "momentum": float, "weight_decay": float,
        "schedule": str, "warmup": float, "step_size": int, "gamma": float, "label_smoothing": float,
        "aux_weight": float, "width": float, "stem": str, "dropout": float, "input_size": int,
        "pad_mode": str, "normalize": str, "precision": str, "seed": int, "device": str,
        "max_steps": int, "log_every": int, "keep_checkpoints": int, "cutout": int, "anneal": str, "final_div": float,
    }  # fmt: skip
    for name, kind in flags.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    for name in ("nesterov", "batch_norm", "channels_last", "flip", "aux_logits", "tensorboard"):
        p.add_argument("--" + name.replace("_", "-"), action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--shuffle-labels", action="store_true", help="train on permuted labels: Adebayo et al.'s data-randomisation test")


def _train(args) -> int:
    if args.download == "cifar100":
        from .datasets import download_cifar100

        print(f"CIFAR-100 ready in {download_cifar100(args.data)}")
    elif args.download:
        print(f"CIFAR-10 ready in {download_cifar10(args.data)}")
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in known and v is not None}
    values["compile"] = bool(args.compile)
    config = TrainConfig(**values)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: (stop.set(), print("\nstopping after this step…", file=sys.stderr)))
    bar: tqdm | None = None

    def on_event(event) -> None:
        nonlocal bar
        if isinstance(event, StartEvent):
            width = event.config["width"]
            for line in event.data.splitlines():
                print(f"data: {line}")
            print(f"run {event.out} on {event.device}: {event.params:,} parameters (width {width}), "
                  f"{event.total_steps} steps of {event.config['batch_size']}")  # fmt: skip
            # In a log file (not a terminal) redraw every 30 s instead of ten times a second.
            bar = tqdm(
                total=event.total_steps,
                initial=event.start_step,
                unit="step",
                dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 30,
            )
        elif isinstance(event, StepEvent) and bar is not None:
            bar.update(event.step - bar.n)
            bar.set_postfix(epoch=f"{event.epoch:.2f}", loss=f"{event.loss:.3f}", lr=f"{event.lr:.3g}", img_s=f"{event.images_per_s:.0f}")
        elif isinstance(event, EpochEvent):
            aux = "".join(f" {h}={a:.4f}" for h, a in (("aux1", event.acc_aux1), ("aux2", event.acc_aux2)) if a is not None)
            tqdm.write(f"epoch {event.epoch}: test accuracy main={event.acc_main:.4f}{aux} loss={event.test_loss:.3f}")
        elif isinstance(event, EndEvent):
            if bar is not None:
                bar.close()
            print(f"{event.status}: {event.message}" + (f"\ncheckpoint: {event.checkpoint}" if event.checkpoint else ""))

    try:
        end = Trainer(config).run(on_event, stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    if end.accuracy:
        print(f"accuracy={end.accuracy['main']:.4f}")
    return 0


def _print_heads(result) -> None:
    for head, acc in result.accuracy.items():
        if acc is not None:
            print(f"accuracy_{head}={acc:.4f}")


def _add_loading_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--in-memory", dest="loading", action="store_const", const="memory", help="decode the pictures once, keep them on the device"
    )
    group.add_argument(
        "--stream", dest="loading", action="store_const", const="stream", help="decode the pictures in DataLoader workers every epoch"
    )
    p.set_defaults(loading=None)


def _eval(args) -> int:
    import json
    from pathlib import Path

    from googlenet.analysis.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint, args.data, device=args.device, loading=args.loading or "auto",
        val_split=args.val_split, seed=args.seed, workers=args.workers,
    )  # fmt: skip
    print(result.report())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=1))
        print(f"json: {args.json}")
    _print_heads(result)
    print(f"images={result.images}")
    print(f"accuracy={result.accuracy['main']:.4f}")
    return 0


def _timeline(args) -> int:
    """Measures the epochs not in ``RUN/timeline.json`` yet; the branch atlas per epoch is the
    app's (explain.timeline.run_timeline), which reads the same cache."""
    import json
    import time

    from googlenet.analysis.epoch_measures import run_timeline

    started = time.perf_counter()
    bar = tqdm(total=1.0, unit="", bar_format="{l_bar}{bar}| {desc}", dynamic_ncols=True, mininterval=0.5)

    def progress(fraction: float, message: str) -> None:
        bar.n = round(fraction, 3)
        bar.set_description_str(message, refresh=True)

    try:
        result = run_timeline(args.run, args.data, args.images, args.device, args.precision, progress=progress)
    finally:
        bar.close()
    for entry in result.entries:
        heads = " ".join(f"{h}={a:.4f}" for h, a in entry.accuracy.items() if a is not None)
        top = max((b for b in entry.importance if "." in b), key=entry.importance.get)
        print(f"epoch {entry.epoch}: accuracy {heads}; heads agree on {entry.agreement.get('all', 1.0):.1%}; "
              f"most important branch {top} (−{entry.importance[top]:.1%} when zeroed)")  # fmt: skip
    for note in result.notes:
        print(f"note: {note}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result.to_json(), indent=1))
        print(f"numbers: {args.json_out}")
    print(f"branches={len(result.branches)}")
    print(f"computed={result.computed} cached={len(result.entries) - result.computed}")
    print(f"seconds={time.perf_counter() - started:.2f}")
    print(f"epochs={len(result.entries)}")
    return 0


def _import(args) -> int:
    from .convert import import_checkpoint
    from .weights import read_meta

    out = import_checkpoint(args.file, args.out, classes=args.classes, transform_input=args.transform_input)
    config, meta = read_meta(out)
    heads = "main + aux1 + aux2" if config.aux_logits else "main only"
    layout = "Lucid's InceptionV1 layout, " if config.layout == "inceptionv1" else ""
    print(f"imported {args.file}: {layout}{config.num_classes} classes, {config.stem} stem, width {config.width:g}, "
          f"{'BatchNorm' if config.batch_norm else 'no BatchNorm'}, branch3 {config.kernel3}×{config.kernel3}, heads {heads}")  # fmt: skip
    if meta.training.get("note"):
        print(f"note: {meta.training['note']}")
    print(f"checkpoint: {out}")
    return 0


def _channel(args) -> int:
    from .channels import layout_spec, parse_channel

    channel = parse_channel(args.address, layout_spec(args.model))
    given = args.address.strip().lower()
    other = channel.ours if given.startswith("mixed") and "_" not in given else channel.microscope
    print(other)
    print(f"{channel.microscope} = {channel.ours} = {channel.lucid_branch} ({channel.kernel} branch, on the {args.model} layout)")
    return 0


def _export(args) -> int:
    """fp16 halves the file (a width-0.25 model: 2.5 MB → 1.3 MB); the accuracy stored is the copy's own."""
    if args.torchvision:
        from .convert import export_torchvision

        out = export_torchvision(args.checkpoint, args.torchvision)
        print(f"torchvision state dict: {out} (load with torchvision.models.googlenet(num_classes=N, aux_logits=…, init_weights=False))")
        return 0
    if not args.out or not args.data:
        raise ValueError("export needs OUT and --data (for the compact copy), or --torchvision OUT.pth")
    from googlenet.analysis.evaluate import evaluate_checkpoint

    from .weights import read_checkpoint, save_checkpoint

    model, meta = read_checkpoint(args.checkpoint)
    out = save_checkpoint(args.out, model, meta, dtype=None if args.fp32 else torch.float16)
    result = evaluate_checkpoint(out, args.data)
    training = {
        **meta.training,
        "accuracy": result.accuracy,
        "exported_from": str(args.checkpoint),
        "dtype": "float32" if args.fp32 else "float16",
    }
    save_checkpoint(out, model, replace(meta, training=training), dtype=None if args.fp32 else torch.float16)
    _print_heads(result)
    print(f"bytes={out.stat().st_size}")
    print(f"accuracy={result.accuracy['main']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
