"""`playbill bench retrain`: what a nightly retrain costs the process that hosts the scheduler.

The retrain runs in a sandbox (a temporary home holding a copy of the current model and its
resume checkpoint, or with --tiny a tiny model made there), never touching the real one.
Measured in the same run:
- baseline: spawning a process that imports TensorFlow and exits (the fixed cost of a run);
- the retrain's wall time, as a ratio to that baseline;
- the host process's resident memory before and after, against the training process's peak
  (training memory must stay out of the bot's process);
- the lag of an asyncio event loop ticking every 50 ms in the host while the run goes on
  (the bot's loop must keep answering).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from playbill.engine.errors import ModelUnavailable
from playbill.engine.models import spec
from playbill.jobs.common import settings_values
from playbill.jobs.retrain import resume_checkpoint, retrain_from_checkpoint
from playbill.jobs.runner import TrainingProcess
from playbill.jobs.trainers import VOTED_MODELS
from playbill.settings import Settings


def _import_tensorflow(send) -> None:
    import tensorflow  # noqa: F401


def spawn_import_seconds() -> float:
    """The baseline: a training process (`jobs.runner`) that only imports TensorFlow."""
    started = time.perf_counter()
    TrainingProcess(_import_tensorflow, name="playbill-bench-baseline").start().wait()
    return time.perf_counter() - started


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sandbox(settings: Settings, model: str, root: Path, tiny: bool) -> Settings:
    values = settings_values(settings)
    values.update(home=str(root / "home"), database_url=f"sqlite:///{root / 'home' / 'bench.db'}")
    values["jobs"]["extra_corpus_dir"] = str(root / "corpus")
    sandbox = Settings(**values)
    if tiny:
        values["data_dir"] = str(root / "data")
        sandbox = Settings(**values)
        done = TrainingProcess(_make_tiny, (model, str(sandbox.home), str(sandbox.data_dir)),  # TensorFlow stays out
                               name="playbill-bench-tiny").start().wait()
        if "made" not in done:
            raise RuntimeError(f"making the tiny model failed: {done.get('error') or done['exit']}")
        return sandbox
    registry, checkpoints = spec(model).registry(settings.home), spec(model).checkpoints(settings.home)
    current = registry.current()  # ModelUnavailable names `playbill train MODEL`
    start = resume_checkpoint(registry, checkpoints)
    if start is None:
        raise ModelUnavailable(f"no valid checkpoint of the current {model} model to benchmark a retrain from")
    copy = spec(model).registry(sandbox.home)
    copy.copy_in(current)
    copy.promote(current.version)
    checkpoints.copy_run(start.run, spec(model).checkpoints(sandbox.home))
    return sandbox


def _make_tiny(send, model: str, home: str, data_dir: str) -> None:
    make_tiny_model(model, home, data_dir)
    send("made", model)


def make_tiny_model(model: str, home: str, data_dir: str) -> None:
    """A tiny current model with checkpoints, on made-up data (for --tiny and quick checks)."""
    rng = random.Random(7)
    if model == "sentiment":
        from playbill.engine.sentiment import SentimentConfig, train_sentiment

        good, bad = "wonderful superb moving brilliant".split(), "awful boring dreadful tedious".split()
        filler = "the film story actor plot scene director movie".split()
        for split, n in (("train", 200), ("test", 100)):
            for label in ("pos", "neg"):
                folder = Path(data_dir) / "aclImdb" / split / label
                folder.mkdir(parents=True)
                for i in range(n):
                    words = rng.choices(good if label == "pos" else bad, k=4) + rng.choices(filler, k=8)
                    rng.shuffle(words)
                    (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(" ".join(words))
        config = SentimentConfig(vocab_size=64, ngram_buckets=256, window=16, embedding_dim=8, lstm_units=8,
                                 batch_size=16, epochs=1)
        train_sentiment(config, Path(home), Path(data_dir), progress=False)
    else:
        from playbill.engine.scene import SceneConfig, train_scene

        corpus = Path(data_dir) / "shakespeare.txt"
        corpus.parent.mkdir(parents=True, exist_ok=True)
        corpus.write_text("".join(rng.choice(["ROMEO:\nBut soft, what light?\n\n", "JULIET:\nO Romeo!\n\n"])
                                  for _ in range(400)))
        config = SceneConfig(name="tiny", embedding_dim=16, rnn_units=32, seq_length=32, batch_size=32, epochs=1)
        train_scene(config, Path(home), Path(data_dir), progress=False)


def bench_retrain(settings: Settings, model: str, *, tiny: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="playbill-bench-") as tmp:
        sandbox = _sandbox(settings, model, Path(tmp), tiny)
        baseline = spawn_import_seconds()
        import playbill.history.api  # noqa: F401 - what the job imports in the host, loaded before measuring
        from playbill.history.db import open_history

        engine, _ = open_history(sandbox.database_url)  # an existing database, as in production
        engine.dispose()
        rss_before = rss_mb()
        lags: list[float] = []

        async def host() -> Any:
            loop = asyncio.get_running_loop()
            job = loop.run_in_executor(None, lambda: retrain_from_checkpoint(model, settings_values(sandbox)))
            while not job.done():
                tick = time.perf_counter()
                await asyncio.sleep(0.05)
                lags.append(time.perf_counter() - tick - 0.05)
            return await job

        started = time.perf_counter()
        outcome = asyncio.run(host())
        wall = time.perf_counter() - started
        rss_after = rss_mb()
        child_peak = outcome.figures.get("training_process", {}).get("peak_rss_mb", float("nan"))
        lags.sort()
    return {
        "model": model,
        "data": "tiny made-up data" if tiny else f"a copy of the current model in {settings.home}",
        "outcome": outcome.status,
        "epochs": sandbox.section(model)["retrain_epochs"],
        "baseline_spawn_import_tf_s": round(baseline, 2),
        "retrain_wall_s": round(wall, 2),
        "retrain_vs_baseline": round(wall / baseline, 2),
        "host_rss_before_mb": round(rss_before, 1),
        "host_rss_after_mb": round(rss_after, 1),
        "training_process_peak_rss_mb": round(child_peak, 1),
        "host_rss_growth_vs_child_peak": round((rss_after - rss_before) / child_peak, 3),
        "outcome_message": outcome.message,
        "loop_lag_ms_p50": round(1000 * lags[len(lags) // 2], 1) if lags else None,
        "loop_lag_ms_max": round(1000 * lags[-1], 1) if lags else None,
        "loop_ticks": len(lags),
    }



# --- `playbill bench feedback`: do the votes teach? -------------------------------------------

FEEDBACK_MEMBERS = 10  # the fixture's 30 votes come from 10 members, 3 each
TROLL_MEMBER = 666


def feedback_fixture() -> dict[str, list[tuple[str, int]]]:
    """The project's fixed feedback fixture: {"voted": [(text, label)], "unseen": [(text, label)]}."""
    import json
    from importlib.resources import files

    raw = json.loads(files("playbill.jobs").joinpath("feedback_fixture.json").read_text("utf-8"))
    return {part: [(row["text"], int(row["label"])) for row in raw[part]] for part in ("voted", "unseen")}


def record_fixture_votes(settings: Settings, voted: list[tuple[str, int]], served: list[str], *,
                         troll: list[tuple[str, str]] = ()) -> None:
    """The fixture's votes, as the bot records them: each review answered with the critic's
    label `served[i]`, then voted "right"/"wrong" against its true label by member i % 10;
    `troll`: (review, served label) pairs one member marks "wrong" all at once."""
    from playbill.history import api
    from playbill.history.db import open_history

    engine, sessions = open_history(settings.database_url)
    try:
        for i, ((text, label), said) in enumerate(zip(voted, served)):
            iid = api.record_interaction(sessions, kind=VOTED_MODELS[0], prompt=text, label=said, probability=0.5,
                                         model_name=VOTED_MODELS[0], user_id=900 + i, source="cli")
            right = (said == "positive") == bool(label)
            api.record_feedback(sessions, iid, 1000 + i % FEEDBACK_MEMBERS, "right" if right else "wrong")
        for text, said in troll:
            iid = api.record_interaction(sessions, kind=VOTED_MODELS[0], prompt=text, label=said, probability=0.5,
                                         model_name=VOTED_MODELS[0], user_id=TROLL_MEMBER, source="cli")
            api.record_feedback(sessions, iid, TROLL_MEMBER, "wrong")
    finally:
        engine.dispose()


def bench_feedback(settings: Settings) -> dict[str, Any]:
    """One retrain of a copy of the current critic with the fixture's votes; before/after figures
    on the voted reviews, the similar unseen ones, IMDB validation and (reported only) test."""
    from playbill.jobs.gate import measure

    name = VOTED_MODELS[0]
    critic = spec(name)
    fixture = feedback_fixture()
    with tempfile.TemporaryDirectory(prefix="playbill-bench-") as tmp:
        sandbox = _sandbox(settings, name, Path(tmp), tiny=False)
        registry = critic.registry(sandbox.home)
        before_version = registry.current_version()
        served = critic.load(registry.current().path).predict([text for text, _ in fixture["voted"]])
        record_fixture_votes(sandbox, fixture["voted"], [v.label for v in served])

        def figures(version: str) -> dict[str, Any]:
            out = measure(name, sandbox, version, report_test=True)
            for part, rows in fixture.items():
                out[part] = critic.evaluate(sandbox.home, sandbox.data_dir, version=version, data=rows)["accuracy"]
            return out

        before = figures(before_version)
        started = time.perf_counter()
        outcome = retrain_from_checkpoint(name, settings_values(sandbox))
        wall = time.perf_counter() - started
        after_version = registry.current_version()
        after = figures(after_version) if after_version != before_version else before
    n = {part: len(rows) for part, rows in fixture.items()}
    return {
        "outcome": outcome.status,
        "message": outcome.message,
        "before_version": before_version,
        "after_version": after_version,
        "retrain_wall_s": round(wall, 1),
        "voted_n": n["voted"], "unseen_n": n["unseen"],
        "voted_right": [round(before["voted"] * n["voted"]), round(after["voted"] * n["voted"])],
        "unseen_right": [round(before["unseen"] * n["unseen"]), round(after["unseen"] * n["unseen"])],
        "imdb_validation_accuracy": [before["accuracy"], after["accuracy"]],
        "imdb_validation_change_points": round(100 * (after["accuracy"] - before["accuracy"]), 2),
        "test_accuracy_reported_only": [before.get("test_accuracy"), after.get("test_accuracy")],
        "learnt": outcome.figures.get("learnt", {}),
        "gate": outcome.figures.get("gate", {}),
    }
