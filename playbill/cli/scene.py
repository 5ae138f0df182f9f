"""The playwright's commands: train/evaluate/bench/checkpoints scene, and `playbill write`."""

from __future__ import annotations

import argparse
import sys
import time

from playbill.engine.scene.config import BACKENDS, PROFILES
from playbill.engine.models import ALIASES
from playbill.cli.common import (CLIError, CommandGroups, check_training_options, continues, model_spec,
                                 print_json, run_training)
from playbill.settings import Settings

NAME = "scene"  # this module is the playwright's commands (engine.models.spec(NAME))
ALIASES_OF_NAME = [alias for alias, model in ALIASES.items() if model == NAME]  # "playwright" (engine.models.ALIASES)


def register(commands: argparse._SubParsersAction, groups: CommandGroups) -> None:
    """Add this feature's subcommands."""
    train = groups("train").add_parser(NAME, aliases=ALIASES_OF_NAME, help="train the playwright (character-level LSTM)")
    train.add_argument("--profile", help="size profile: default (best for ~1 h on CPU) or tutorial (the tutorial's model)")
    train.add_argument("--epochs", type=int, help="epochs to run now (default: the profile's budget)")
    train.add_argument("--resume", action="store_true", help="continue from the latest valid checkpoint; the new "
                       "version becomes current only through the nightly job's gate")
    train.add_argument("--checkpoint", metavar="PATH", help="continue from this checkpoint (see `playbill checkpoints scene`)")
    train.add_argument("--corpus", metavar="PATH", help="a UTF-8 text file to learn instead of Tiny Shakespeare")
    train.add_argument("--no-promote", action="store_true", help="publish the new version without making it current")
    train.add_argument("--json", action="store_true", help="print the result as JSON")
    train.set_defaults(handler=_train)

    evaluate = groups("evaluate").add_parser(NAME, aliases=ALIASES_OF_NAME, help="validation loss on the held-out last 10%% of the corpus")
    evaluate.add_argument("--version", help="model version (default: the current one)")
    evaluate.add_argument("--corpus", metavar="PATH", help="evaluate on this corpus's held-out block")
    evaluate.add_argument("--backend", choices=BACKENDS, default="float32",
                          help="run the model in float32 (default, the figure training records) or int8")
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(handler=_evaluate)

    checkpoints = groups("checkpoints").add_parser(NAME, aliases=ALIASES_OF_NAME, help="list the playwright's training checkpoints")
    checkpoints.add_argument("--json", action="store_true", help="print JSON, one object per line")
    checkpoints.set_defaults(handler=_checkpoints)

    bench = groups("bench").add_parser(NAME, aliases=ALIASES_OF_NAME, help="tutorial sampling loop vs the float32 and int8 samplers, same weights")
    bench.add_argument("--length", type=int, default=2000, help="characters per stream for the numpy sampler")
    bench.add_argument("--tutorial-length", type=int, default=200, help="characters for the (slow) tutorial loop")
    bench.add_argument("--batch", type=int, default=8, help="prompts generated together")
    bench.add_argument("--profile", default="tutorial",
                       help="model size to measure: tutorial (the targets' size, default) or default (what the bot serves)")
    bench.add_argument("--json", action="store_true", help="print JSON")
    bench.set_defaults(handler=_bench)

    write = commands.add_parser("write", help="let the playwright continue a prompt")
    write.add_argument("prompt", help="the opening words, e.g. 'ROMEO:'")
    write.add_argument("--length", type=int, help="characters to write (default: scene.default_length)")
    write.add_argument("--temperature", type=float, help="randomness, 0.1 to 2.0 (default: scene.temperature)")
    write.add_argument("--top-k", type=int, help="sample only among the k likeliest characters")
    write.add_argument("--seed", type=int, help="the same seed writes the same text")
    write.add_argument("--stop", action=argparse.BooleanOptionalAction, default=None,
                       help="end at the end of a speech or sentence, not mid-word (default: scene.stop_at_boundary)")
    write.add_argument("--version", help="model version (default: the current one)")
    write.add_argument("--backend", choices=BACKENDS, help="auto, float32 or int8 (default: scene.backend)")
    write.add_argument("--json", action="store_true", help='print {"text", "chars_per_s", "model_version"}')
    write.set_defaults(handler=_write)


def _train(args: argparse.Namespace, settings: Settings) -> int:
    check_training_options(args)
    model, section = model_spec(NAME), settings.section(NAME)
    if args.profile:
        section["profile"] = args.profile
    config = model.config_from(section)  # the profile, with [scene] epochs, seed, validation_fraction on top
    gated = continues(args)

    def train():
        return model.train(
            config, settings.home, settings.data_dir, epochs=args.epochs if args.epochs is not None else settings.scene.epochs,
            resume=args.resume,
            checkpoint=args.checkpoint, data=args.corpus or model.data_from(section),
            promote=not args.no_promote and not gated, progress=not args.json, keep_runs=model.keep_runs,
        )

    done = run_training(NAME, settings, args, train)
    if done is None:  # Ctrl-C: said what was kept
        return 130
    result, verdict = done
    if args.json:
        print_json({k: v for k, v in result.as_dict().items() if k != "extra"} | ({"gate": verdict} if verdict else {}))
    else:
        m = result.metrics
        print(
            f"scene {result.version}: val_loss {m['val_loss']:.4f} nats/char ({m['bits_per_char']:.3f} bits), "
            f"epoch {result.last_epoch}, {result.seconds / 60:.1f} min"
            + (" (current)" if result.promoted else " (not promoted)")
        )
        if verdict:
            print(f"  gate (the corpus's validation block): {verdict}")
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    data = Path(args.corpus) if args.corpus else None  # None: the version's own corpus
    result = model_spec(NAME).evaluate(settings.home, settings.data_dir, version=args.version, data=data,
                              backend=args.backend)
    if args.json:
        print_json(result)
    else:
        print(f"scene {result['model_version']}: val_loss {result['val_loss']:.4f} nats/char, "
              f"{result['bits_per_char']:.3f} bits/char on {result['chars']} held-out characters "
              f"({result['backend']})")
        if "val_loss_delta" in result:
            print(f"float32: {result['float32_val_loss']:.4f} nats/char; int8 - float32: "
                  f"{result['val_loss_delta']:+.6f} nats/char; largest next-character probability difference "
                  f"{result['max_prob_diff']:.4f}")
    return 0


def _checkpoints(args: argparse.Namespace, settings: Settings) -> int:
    found = model_spec(NAME).checkpoints(settings.home).list()
    if not found:
        print("no scene checkpoints yet; `playbill train scene` writes one per epoch")
        return 0
    rows = []
    for ckpt in found:
        rows.append({
            "checkpoint": ckpt.label(), "run": ckpt.run, "epoch": ckpt.epoch, "val_loss": ckpt.val_loss,
            "saved_at": ckpt.saved_at, "status": "valid" if ckpt.verify() else "corrupt",
            "profile": config.get("name") if isinstance(config := ckpt.extra.get("config"), dict) else None,
        })
    if args.json:
        for row in rows:
            print_json(row)
        return 0
    print(f"{'checkpoint':48} {'epoch':>5} {'val_loss':>8}  {'saved (UTC)':25} status")
    for row in rows:
        loss = f"{row['val_loss']:.4f}" if row["val_loss"] is not None else "-"
        print(f"{row['checkpoint']:48} {row['epoch']:>5} {loss:>8}  {row['saved_at']:25} {row['status']}")
    print("resume: playbill train scene --resume  (latest valid) or --checkpoint RUN/epoch-NNNN.keras")
    return 0


def _write(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.engine.scene import SceneRequest

    spec, section, s = model_spec(NAME), settings.section(NAME), settings.scene
    request = SceneRequest(
        prompt=args.prompt,
        length=args.length if args.length is not None else s.default_length,
        temperature=args.temperature if args.temperature is not None else s.temperature,
        top_k=args.top_k if args.top_k is not None else s.top_k,
        seed=args.seed,
        stop_at_boundary=s.stop_at_boundary if args.stop is None else args.stop,
    )
    limits = spec.limits_from(section)
    spec.check(request, limits)  # before the model loads; InvalidInput: the engine's one message
    from playbill.engine.serving import load_model

    serving = {**section, "backend": args.backend} if args.backend else section
    writer = load_model(spec, settings.home, serving, args.version)  # a damaged current: the previous good one
    started = time.perf_counter()
    if args.json:
        text = writer.generate(request)
        seconds = time.perf_counter() - started
        print_json({"text": text, "prompt": args.prompt, "chars_per_s": round(len(text) / max(seconds, 1e-9), 1),
                    "model_version": writer.version})
        return 0
    pieces = writer.stream(request, chunk_chars=s.stream_chunk_chars)
    sys.stdout.write(args.prompt)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from playbill.engine.scene.bench import run_bench

    if args.length < 1 or args.tutorial_length < 1 or args.batch < 1:
        raise CLIError("--length, --tutorial-length and --batch must be at least 1")
    if args.profile not in PROFILES:
        raise CLIError(f"unknown profile {args.profile!r}; choose one of: {', '.join(sorted(PROFILES))}")
    result = run_bench(length=args.length, tutorial_length=args.tutorial_length, batch=args.batch, profile=args.profile)
    if args.json:
        print_json(result)
        return 0
    print(f"weights: {result['weights']} ({result['parameters']:,} parameters; int8 step "
          f"{result['int8_model_bytes'] / 1e6:.1f} MB, converted in {result['int8_convert_seconds']:.1f} s); "
          f"numpy BLAS threads by default: {result['blas_threads']}; load average {result['load_average']:.2f}")
    b = result["batch"]
    for threads, rates in result["by_blas_threads"].items():
        print(f"  float32 numpy, {threads} BLAS thread(s): 1 stream {rates['single']:,.0f} chars/s, "
              f"{b} prompts {rates['batch']:,.0f} chars/s")
    for threads, rates in result["int8_by_threads"].items():
        print(f"  int8 LiteRT, {threads} interpreter thread(s): 1 stream {rates['single']:,.0f} chars/s, "
              f"{b} prompts {rates['batch']:,.0f} chars/s")
    t = result["tutorial_chars_per_s"]
    rows = [
        ("tutorial loop (one model(...) call per char)", t, 1.0, None),
        ("float32 numpy, 1 stream", result["single_chars_per_s"], result["single_vs_tutorial"], None),
        (f"float32 numpy, {b} prompts together (total)", result["batch_chars_per_s"], result["batch_vs_tutorial"], None),
        ("int8 LiteRT, 1 stream", result["int8_single_chars_per_s"], result["int8_single_vs_tutorial"],
         result["int8_single_vs_float32"]),
        (f"int8 LiteRT, {b} prompts together (total)", result["int8_batch_chars_per_s"], result["int8_batch_vs_tutorial"],
         result["int8_batch_vs_float32"]),
    ]
    print(f"{'sampler (same weights)':46} {'chars/s':>9} {'vs tutorial':>12} {'vs float32':>11}")
    for name, rate, vs_tutorial, vs_float in rows:
        print(f"{name:46} {rate:>9,.0f} {vs_tutorial:>11.1f}x " + (f"{vs_float:>10.2f}x" if vs_float else ""))
    return 0
