"""The critic's commands: train/evaluate/bench/checkpoints sentiment, and predict."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playbill.engine.models import ALIASES
from playbill.cli.common import (CLIError, CommandGroups, ProgressBar, check_training_options, continues, model_spec,
                                 print_json, run_training)
from playbill.settings import Settings

NAME = "sentiment"  # this module is the critic's commands (engine.models.spec(NAME))
ALIASES_OF_NAME = [alias for alias, model in ALIASES.items() if model == NAME]  # "critic" (engine.models.ALIASES)
MAX_FILE_BYTES = 256 << 20  # the largest --file read (IMDB's 50,000 reviews are 65 MiB)
_BLOCK = 1 << 16


def register(commands: argparse._SubParsersAction, groups: CommandGroups) -> None:
    """Add this feature's subcommands."""
    train = groups("train").add_parser(NAME, aliases=ALIASES_OF_NAME, help="train the critic on IMDB (or your CSV)")
    train.add_argument("--profile", help="quick (one n-gram model, seconds), default (three blended on validation) "
                       "or wide_deep (the earlier LSTM + n-gram critic); default: [sentiment] profile")
    train.add_argument("--epochs", type=int, help="epochs to run now (default: [sentiment] epochs)")
    train.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint; the new "
                       "version becomes current only through the nightly job's gate (validation, not test)")
    train.add_argument("--checkpoint", metavar="PATH", help="continue from this checkpoint (see `playbill checkpoints sentiment`)")
    train.add_argument("--data", metavar="FILE.csv", type=Path, help="train on a CSV with columns text,label instead of IMDB")
    train.add_argument("--no-promote", action="store_true", help="save the new version without making it current")
    train.add_argument("--json", action="store_true", help="print the result as one JSON object")
    train.set_defaults(handler=_train)

    evaluate = groups("evaluate").add_parser(NAME, aliases=ALIASES_OF_NAME, help="accuracy on the 25,000 IMDB test reviews (or a CSV)")
    evaluate.add_argument("--data", metavar="FILE.csv", type=Path, help="a CSV with columns text,label")
    evaluate.add_argument("--version", help="a model version (default: the current one)")
    evaluate.add_argument("--split", choices=("test", "validation"),
                          help="IMDB's 25,000 test reviews (the default without --data; reported, never used to pick "
                               "a model) or the fixed validation split the nightly gate uses")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(handler=_evaluate)

    bench = groups("bench").add_parser(NAME, aliases=ALIASES_OF_NAME,
                                       help="the seed recipe and a TF-IDF baseline vs the default critic, same run: "
                                            "IMDB test, short reviews, calibration, speed")
    bench.add_argument("--epochs", type=int, default=10, help="epochs for the tutorial recipe (default 10, as the tutorial)")
    bench.add_argument("--skip-train", action="store_true", help="reuse the current default model instead of training one")
    bench.add_argument("--skip-tutorial", action="store_true", help="leave out the seed (Keras) recipe")
    bench.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench.set_defaults(handler=_bench)

    checkpoints = groups("checkpoints").add_parser(NAME, aliases=ALIASES_OF_NAME, help="list the critic's training checkpoints")
    checkpoints.add_argument("--json", action="store_true", help="one JSON object a line")
    checkpoints.set_defaults(handler=_checkpoints)

    predict = commands.add_parser("predict", help="judge a review: positive or negative")
    predict.add_argument("text", nargs="?", help="the review text")
    predict.add_argument("--file", metavar="FILE", help="a UTF-8 file with one review a line ('-': standard input; "
                         f"at most {MAX_FILE_BYTES >> 20} MiB)")
    predict.add_argument("--version", help="a model version (default: the current one)")
    predict.add_argument("--json", action="store_true", help="one JSON object a line")
    predict.set_defaults(handler=_predict)


def _train(args: argparse.Namespace, settings: Settings) -> int:
    check_training_options(args)
    model, section = model_spec(NAME), settings.section(NAME)
    gated = continues(args)

    def train():
        return model.train(model.config_from(section, profile=args.profile), settings.home, settings.data_dir,
                           epochs=args.epochs, resume=args.resume, checkpoint=args.checkpoint,
                           data=args.data or model.data_from(section), promote=not args.no_promote and not gated,
                           progress=not args.json, keep_runs=model.keep_runs)

    done = run_training(NAME, settings, args, train)
    if done is None:  # Ctrl-C: said what was kept
        return 130
    result, verdict = done
    if args.json:
        print_json(result.as_dict())
        return 0
    m = result.metrics
    print(f"sentiment {result.version}: {result.epochs_run} epoch(s) run, now at epoch {result.last_epoch}"
          + (f" (resumed from {result.started_from})" if result.started_from else ""))
    print(f"  validation accuracy {m['val_accuracy']:.4f}, loss {m['val_loss']:.4f}"
          + (f"; test accuracy {m['test_accuracy']:.4f} on {m['test_n']:,} reviews" if "test_accuracy" in m else ""))
    print(f"  {result.seconds:.0f} s; {'now current' if result.promoted else 'saved, not promoted'}")
    if verdict:
        print(f"  gate (validation, never test): {verdict}")
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    split = {"split": args.split or "test"} if args.data is None or args.split else {}  # a CSV: all of it
    with ProgressBar("judging the held-out reviews") as bar:
        result = model_spec(NAME).evaluate(settings.home, settings.data_dir, version=args.version, data=args.data,
                                           progress=bar, **split)
    if args.json:
        print_json(result)
    else:
        print(f"accuracy {result['accuracy']:.4f} on {result['n']:,} reviews (model {result['model_version']})")
    return 0


def _read_bounded(name: str) -> bytes:
    """The bytes of a file (or '-': standard input), refused past MAX_FILE_BYTES or at the first
    NUL byte, so /dev/zero or a binary file is never read without limit."""
    try:
        stream = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise CLIError(f"cannot read {name}: {exc.strerror or exc}") from None
    where = "standard input" if name == "-" else name
    blocks, size = [], 0
    try:
        while block := stream.read(_BLOCK):
            if b"\x00" in block:
                raise CLIError(f"{where} looks binary; give UTF-8 text with one review a line")
            size += len(block)
            if size > MAX_FILE_BYTES:
                raise CLIError(f"{where} is larger than {MAX_FILE_BYTES >> 20} MiB; split it into smaller files")
            blocks.append(block)
    except OSError as exc:
        raise CLIError(f"cannot read {where}: {exc.strerror or exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return b"".join(blocks)


def _read_lines(name: str) -> list[tuple[int, str]]:
    """(line number, review) for each non-blank line. Lines end at "\n" (and a "\r" before it)
    only: U+0085, form feeds and Unicode line separators are characters inside a review."""
    where = "standard input" if name == "-" else name
    try:
        text = _read_bounded(name).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CLIError(f"{where} is not UTF-8 text (byte {exc.start})") from None
    lines = [(number, line.removesuffix("\r")) for number, line in enumerate(text.split("\n"), start=1)]
    lines = [(number, line) for number, line in lines if line.strip()]
    if not lines:
        raise CLIError(f"{where} has no reviews (one review a line)")
    return lines


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    if (args.text is None) == (args.file is None):
        raise CLIError('give a review as text (playbill predict "...") or --file FILE, one of the two')
    numbered = _read_lines(args.file) if args.file else [(None, args.text)]
    texts = [text for _, text in numbered]
    from playbill.engine.sentiment import ReviewRequest

    spec, section = model_spec(NAME), settings.section(NAME)
    limits = spec.limits_from(section)
    from playbill.engine.errors import InvalidInput

    for line, text in numbered:  # every line before the model loads; InvalidInput: the engine's one message
        try:
            spec.check(ReviewRequest(text), limits)
        except InvalidInput as exc:
            if line is None:
                raise
            raise CLIError(f"{args.file}, line {line}: {exc}") from None
    from playbill.engine.serving import load_model

    model = load_model(spec, settings.home, section, args.version)  # a damaged current: the previous good one
    for start in range(0, len(texts), 1024):
        verdicts = model.predict(texts[start : start + 1024])
        for (line, _), verdict in zip(numbered[start : start + 1024], verdicts, strict=True):
            if args.json:
                print_json(verdict.as_dict() | ({"line": line} if line is not None else {}))
            else:
                mixed = "mixed, leans " if getattr(verdict, "mixed", False) else ""
                print(f"{mixed}{verdict.label} ({verdict.positive_probability:.1%} positive)")
    return 0


def _checkpoints(args: argparse.Namespace, settings: Settings) -> int:
    found = model_spec(NAME).checkpoints(settings.home).list()
    if not found and not args.json:
        print("no sentiment checkpoints yet; `playbill train sentiment` writes one every epoch")
    for ckpt in found:
        ok = ckpt.verify()
        if args.json:
            print_json({"checkpoint": ckpt.label(), "epoch": ckpt.epoch, "val_loss": ckpt.val_loss,
                        "saved_at": ckpt.saved_at, "valid": ok})
        else:
            loss = f"{ckpt.val_loss:.4f}" if ckpt.val_loss is not None else "-"
            print(f"{ckpt.label():60s} epoch {ckpt.epoch:3d}  val_loss {loss}  {ckpt.saved_at}" + ("" if ok else "  CORRUPT"))
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.epochs < 1:
        raise CLIError("--epochs must be at least 1")
    from playbill.engine.sentiment.bench import run_bench

    model = model_spec(NAME)
    report = run_bench(model.config_from(settings.section(NAME)), settings.home, settings.data_dir, tutorial_epochs=args.epochs,
                       skip_train=args.skip_train, skip_tutorial=args.skip_tutorial, progress=not args.json)
    if args.json:
        print_json(report)
        return 0
    print(report["table"])
    sys.stdout.flush()
    return 0
