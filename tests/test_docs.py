"""Every code block of README.md and docs/*.md is checked, by its language, so the documentation cannot drift
from the code:

- ``python`` blocks run. The blocks of one file run in order in one namespace, in a fresh temporary folder
  (files they write land there), after the names of :data:`GIVEN` for that file are defined (the README's
  "explain your own model" block says which names it assumes).
- ``bash`` blocks: every command line (``\\`` continuations joined, ``&&`` chains split, ``#`` comments and
  ``NAME=value`` prefixes dropped) is checked by its program: ``refine-fast ...`` and ``torchrun ... -m
  refine_fast.cli ...`` are parsed by the real parser (:func:`refine_fast.cli.build_parser`), in a folder
  where the files and folders that options must name exist as placeholders, so a misspelled option or a
  value out of range fails; ``python -m pytest PATHS`` and ``python SCRIPT`` need the paths to exist;
  ``pip install`` needs the extras it names to exist in pyproject.toml; ``export NAME=value`` needs that
  form. A line of any other program fails (add a check for it here).
- A block in any other language fails.

Also, every ``--option`` the docs name in inline code (a bare option, or a ``refine-fast`` command line) is an
option of some ``refine-fast`` command (or one of :data:`OTHER_OPTIONS`, pytest's and pip's named alone).
"""
import argparse
import os
import re
import shlex
from pathlib import Path

import pytest
import torch

from refine_fast import cli

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
OTHER_OPTIONS = {"--no-build-isolation", "--benchmark-only"}


def _given_readme():
    """The README's ``model``, ``train_graphs``, ``test_graphs``: a seeded BA-3motif model, 30 small graphs."""
    from refine_fast.datasets import BA3Motif
    from refine_fast.models import BA3MotifNet

    torch.manual_seed(0)
    graphs = list(BA3Motif("data", seed=0, graphs_per_class=10))
    return {"model": BA3MotifNet().eval(), "train_graphs": graphs[:24], "test_graphs": graphs[24:]}


GIVEN = {"README.md": _given_readme}


def blocks(path: Path):
    return [(lang, body) for lang, body in FENCE.findall(path.read_text())]


def test_every_block_has_a_checked_language():
    for path in FILES:
        for lang, _ in blocks(path):
            assert lang in ("python", "bash"), f"{path.name}: a ```{lang} block; tests/test_docs.py checks only " \
                                               f"python and bash"


@pytest.mark.parametrize("path", [p for p in FILES if any(lang == "python" for lang, _ in blocks(p))],
                         ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        namespace = GIVEN[path.name]() if path.name in GIVEN else {}
        for n, (lang, body) in enumerate(blocks(path)):
            if lang == "python":
                exec(compile(body, f"{path.name}, block {n}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)


def commands(body: str):
    """The command lines of a bash block, as token lists."""
    for line in body.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            cut = tokens.index("&&") if "&&" in tokens else len(tokens)
            command, tokens = tokens[:cut], tokens[cut + 1:]
            while command and re.fullmatch(r"[A-Z_]+=\S*", command[0]):
                command = command[1:]
            if command:
                yield command


def _subcommand_actions():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, {name: p._actions for name, p in sub.choices.items()}


def parse_cli(args, where: str, folder: Path) -> None:
    """Parse ``refine-fast ARGS`` in ``folder`` with placeholders for the files and folders options need."""
    parser, actions = _subcommand_actions()
    needs = {}
    for action in actions.get(args[0], []):
        kind = {cli._existing_file: "file", cli._existing_dir: "dir"}.get(action.type)
        for option in action.option_strings if kind else ():
            needs[option] = kind
    for option, value in zip(args, args[1:]):
        if option in needs:
            target = folder / value
            if needs[option] == "dir":
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        parser.parse_args(args)
    except SystemExit as exit:
        pytest.fail(f"{where}: refine-fast {' '.join(args)} does not parse (exit {exit.code})")
    finally:
        os.chdir(cwd)


def extras() -> set:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^(\w+)\s*=", section, re.M))


def check_command(tokens, where: str, folder: Path) -> None:
    program = tokens[0]
    if program == "refine-fast":
        parse_cli(tokens[1:], where, folder)
    elif program == "torchrun":
        assert "-m" in tokens and tokens[tokens.index("-m") + 1] == "refine_fast.cli", where
        parse_cli(tokens[tokens.index("-m") + 2:], where, folder)
    elif program == "python" and tokens[1:3] == ["-m", "pytest"]:
        paths = [t for t in tokens[3:] if not t.startswith("-") and "=" not in t]
        assert paths and all((ROOT / p).exists() for p in paths), f"{where}: {' '.join(tokens)}"
    elif program == "python":
        assert tokens[1].endswith(".py") and (ROOT / tokens[1]).is_file(), f"{where}: {' '.join(tokens)}"
    elif program == "pip":
        named = {e for t in tokens for group in re.findall(r"\.\[([\w,]+)\]", t) for e in group.split(",")}
        assert named <= extras(), f"{where}: unknown extras {named - extras()}"
    elif program == "export":
        assert len(tokens) == 2 and re.fullmatch(r"[A-Z_]+=\S+", tokens[1]), f"{where}: {' '.join(tokens)}"
    else:
        pytest.fail(f"{where}: no check for the program {program!r} (tests/test_docs.py)")


@pytest.mark.parametrize("path", [p for p in FILES if any(lang == "bash" for lang, _ in blocks(p))],
                         ids=lambda p: p.name)
def test_bash_blocks_parse(path, tmp_path):
    checked = 0
    for n, (lang, body) in enumerate(blocks(path)):
        if lang == "bash":
            for tokens in commands(body):
                check_command(tokens, f"{path.name}, block {n}", tmp_path)
                checked += 1
    assert checked


def test_quick_start_is_the_ci_command():
    """.ci/run runs the README's Quick start block verbatim; it must stay the one CI expects."""
    readme = (ROOT / "README.md").read_text()
    body = readme.split("## Quick start\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert body.splitlines() == [
        'pip install torch==2.13.0 setuptools wheel ninja && pip install --no-build-isolation -e ".[test,pgm]" '
        '&& refine-fast demo --out demo_out',
        "python -m pytest tests -q",
    ]


def test_inline_options_exist():
    parser, actions = _subcommand_actions()
    known = {o for acts in actions.values() for a in acts for o in a.option_strings} | OTHER_OPTIONS
    for path in FILES:
        for span in re.findall(r"`([^`\n]+)`", FENCE.sub("", path.read_text())):
            if not span.startswith(("--", "refine-fast")):  # another program's command line
                continue
            for option in re.findall(r"(?<![\w-])--[a-z][\w-]*", span):
                assert option in known, f"{path.name}: `{span}` names {option}, which no command has"
