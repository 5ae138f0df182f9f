"""Playbill as an installed package: a wheel, installed non-editable, run from outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
SHIPPED = ("playbill", "engine", "bot", "jobs", "history", "migrations", "pyproject.toml", "README.md")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources, installed with `pip --target` (no dependencies:
    the venv's own site-packages provide them, but never the editable checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in SHIPPED:
        path = CHECKOUT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
                   check=True, cwd=root, capture_output=True)
    (wheel,) = (root / "dist").glob("playbill-*.whl")
    target = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
                   check=True, cwd=root, capture_output=True)
    return target


def playbill(installed: Path, cwd: Path, *args: str, module: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run the installed playbill with `python -S` (no .pth files, so no editable finder) and only
    the install folder and the venv's dependencies on the path."""
    site_packages = sysconfig.get_paths()["purelib"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PLAYBILL_")}
    environ.update(PYTHONPATH=f"{installed}{os.pathsep}{site_packages}", TF_CPP_MIN_LOG_LEVEL="2", **env)
    entry = ["-m", "playbill"] if module else [str(installed / "bin" / "playbill")]
    return subprocess.run([sys.executable, "-S", *entry, *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=300)


def test_the_wheel_installs_one_top_level_package_and_every_module(installed: Path) -> None:
    top_level = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert top_level == {"playbill"}
    mapping = tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    expected = {installed.joinpath(*package.split("."), path.relative_to(CHECKOUT / folder))
                for package, folder in mapping.items() for path in (CHECKOUT / folder).rglob("*.py")
                if not any(path.is_relative_to(CHECKOUT / other) for other in mapping.values()
                           if other != folder and (CHECKOUT / other).is_relative_to(CHECKOUT / folder))}
    missing = sorted(str(p.relative_to(installed)) for p in expected if not p.exists())
    assert not missing


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    code = ("import playbill, playbill.history, playbill.migrations; "
            "print(playbill.__file__, playbill.history.__file__, playbill.migrations.__file__)")
    site_packages = sysconfig.get_paths()["purelib"]
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": f"{installed}{os.pathsep}{site_packages}"}).stdout
    assert all(Path(p).is_relative_to(installed) for p in out.split())


def test_version_from_one_source(installed: Path, tmp_path: Path) -> None:
    from playbill import __version__

    result = playbill(installed, tmp_path, "--version", module=False)
    assert result.stdout.strip() == f"playbill {__version__}"


def test_the_example_config_is_in_the_wheel(installed: Path, tmp_path: Path) -> None:
    result = playbill(installed, tmp_path, "config", "--example")
    assert result.stdout == (CHECKOUT / "config.example.toml").read_text(encoding="utf-8")


def test_db_upgrade_history_config_and_predict_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    from fakes import train_tiny_sentiment

    home = tmp_path / "home"
    train_tiny_sentiment(home, tmp_path / "work")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PLAYBILL_HOME": str(home)}
    steps = {
        "db upgrade": playbill(installed, elsewhere, "db", "upgrade", **env),
        "history": playbill(installed, elsewhere, "history", "--format", "json", **env),
        "config": playbill(installed, elsewhere, "config", **env),
        "predict": playbill(installed, elsewhere, "predict", "--json", "a wonderful film, superb acting", **env),
    }
    failed = {name: r.stderr.strip().splitlines()[-1:] for name, r in steps.items() if r.returncode != 0}
    assert not failed
    assert json.loads(steps["history"].stdout) == []
    assert json.loads(steps["config"].stdout)["home"] == str(home)
    assert json.loads(steps["predict"].stdout)["label"] in ("positive", "negative")


HOST_BOT = """
import asyncio, threading, discord, playbill.bot
from discord.ext import commands

async def main():
    bot = commands.Bot(command_prefix="!", intents=discord.Intents.none())
    playbill.bot.configure(bot, start_scheduler=False)
    async with bot:
        await bot.load_extension("playbill.bot")
        loaded = sorted(c.name for c in bot.tree.get_commands())
        await bot.unload_extension("playbill.bot")
        left = sorted(c.name for c in bot.tree.get_commands())
    workers = [t.name for t in threading.enumerate() if t.name.startswith(("sentiment-worker", "scene-worker"))]
    print(playbill.bot.__file__, loaded, left, workers)

asyncio.run(main())
"""


def test_a_host_bot_loads_the_extension_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    site_packages = sysconfig.get_paths()["purelib"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYBILL_")}
    env.update(PYTHONPATH=f"{installed}{os.pathsep}{site_packages}", PLAYBILL_HOME=str(tmp_path / "home"))
    result = subprocess.run([sys.executable, "-S", "-c", HOST_BOT], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    where, rest = result.stdout.split(" ", 1)
    assert Path(where).is_relative_to(installed)
    assert rest.strip() == "['admin', 'forget-me', 'help', 'review-sentiment', 'write-scene'] [] []"
