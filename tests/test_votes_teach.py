"""Votes that teach, safe against trolls: one real retrain of a tiny critic (numpy n-gram profile)
with the project's feedback fixture (jobs/feedback_fixture.json)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from playbill.engine.models import spec
from playbill.jobs.bench import feedback_fixture, record_fixture_votes
from playbill.jobs.gate import measure
from playbill.jobs.retrain import retrain_from_checkpoint
from tiny_imdb import write_imdb

GOOD = "wonderful superb moving brilliant loved great good fun smiling beautiful".split()
BAD = "awful boring dreadful tedious waste bad dull asleep worst mess".split()
FILLER = "the film story actor plot scene director movie it was a and of honestly".split()


def review(rng: random.Random, positive: bool) -> str:
    """30 words a tiny critic can learn, with the words of the other side mixed in so that
    validation accuracy is not a perfect 1.0."""
    mine, theirs = (GOOD, BAD) if positive else (BAD, GOOD)
    words = rng.choices(mine, k=4) + rng.choices(theirs, k=rng.choice([1, 2, 3, 4])) + rng.choices(FILLER, k=22)
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture
def critic(settings, tmp_path):
    """A quick-profile critic (NB-prior logistic regression, no Keras) on tiny IMDB-shaped data; a
    retrain continues its checkpoint, whose config (the profile) wins."""
    settings.data_dir = tmp_path / "data"
    write_imdb(settings.data_dir, {"train": 150, "test": 50}, review)
    model = spec("sentiment")
    model.train(model.config_from(settings.section("sentiment"), profile="quick"), settings.home, settings.data_dir, progress=False)
    return model


def served_labels(model, settings, texts: list[str]) -> list[str]:
    return [v.label for v in model.load(model.registry(settings.home).current().path).predict(texts)]


def right(model, settings, rows) -> int:
    version = model.registry(settings.home).current_version()
    return round(model.evaluate(settings.home, settings.data_dir, version=version, data=rows)["accuracy"] * len(rows))


def validation(model, settings) -> float:
    return measure("sentiment", settings, model.registry(settings.home).current_version())["accuracy"]


def test_after_one_retrain_the_critic_agrees_with_the_votes_and_learnt_similar_reviews(critic, settings) -> None:
    fixture = feedback_fixture()
    record_fixture_votes(settings, fixture["voted"], served_labels(critic, settings, [t for t, _ in fixture["voted"]]))
    unseen_before, validation_before = right(critic, settings, fixture["unseen"]), validation(critic, settings)
    outcome = retrain_from_checkpoint("sentiment", settings)
    figures = (outcome.status, right(critic, settings, fixture["voted"]) >= 27,
               right(critic, settings, fixture["unseen"]) > unseen_before,
               validation(critic, settings) >= validation_before - 0.003)
    assert figures == ("promoted", True, True, True), outcome.message


def test_one_member_marking_200_reviews_wrong_changes_nothing_else(critic, settings) -> None:
    fixture = feedback_fixture()
    voted = [t for t, _ in fixture["voted"]]
    record_fixture_votes(settings, fixture["voted"], served_labels(critic, settings, voted))
    retrain_from_checkpoint("sentiment", settings)  # the community's votes, learnt
    honest_answers, validation_before = served_labels(critic, settings, voted), validation(critic, settings)
    rng = random.Random(3)
    targets = [" ".join(rng.choices(GOOD, k=6) + rng.choices(FILLER, k=24)) for _ in range(200)]
    record_fixture_votes(settings, [], [], troll=list(zip(targets, served_labels(critic, settings, targets))))
    retrain_from_checkpoint("sentiment", settings)
    assert (served_labels(critic, settings, voted), validation(critic, settings)) == (honest_answers, validation_before)


def test_bench_feedback_reports_before_and_after_on_every_set(critic, settings) -> None:
    from playbill.jobs.bench import bench_feedback

    figures = bench_feedback(settings)  # a sandbox copy: the home's own critic is untouched
    assert (figures["outcome"], figures["voted_right"][1] >= 27, len(figures["test_accuracy_reported_only"]),
            critic.registry(settings.home).current_version() == figures["before_version"]) == ("promoted", True, 2, True)
