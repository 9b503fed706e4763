"""The docs say only what vlrun does (issue 28, 7).

Every `vlrun ...` command line in README.md and docs/*.md, in code blocks and inline code, is
parsed by the real CLI's click parser (nothing runs): its command must exist and every option it
names must be an option of that command. Placeholders (PROFILE, [--flag], PATHS...) are fine:
only command and option names are checked, never values.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

from runner.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)\s*([\w-]*)")
INLINE = re.compile(r"`([^`\n]+)`")
#: Code blocks in these languages hold no shell commands.
NOT_SHELL = {"yaml", "yml", "json", "python", "py", "toml", "text", "mermaid", "dot", "ini"}
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", "<", ">", ">>", "2>", "2>&1", "&>"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # the command as written
    argv: tuple[str, ...]  # what follows `vlrun`


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in prose: words are enough to find options
        return text.split()


def _commands_in(text: str) -> list[tuple[str, ...]]:
    """The argv of each `vlrun` command in one shell line (pipelines and env prefixes too)."""
    found: list[tuple[str, ...]] = []
    segment: list[str] = []
    for token in [*_tokens(text), "|"]:
        if token in SHELL_OPERATORS or token.startswith((">", "2>")):
            while segment and (ENV_ASSIGNMENT.match(segment[0]) or segment[0] in {"exec", "time"}):
                segment.pop(0)
            if segment and segment[0].rsplit("/", 1)[-1] == "vlrun":
                found.append(tuple(_unplaceholder(segment[1:])))
            segment = []
        else:
            segment.append(token)
    return found


def _unplaceholder(args: list[str]) -> list[str]:
    """``[--scenario]`` -> ``--scenario``; a lone ``...`` goes."""
    out = []
    for arg in args:
        arg = arg.lstrip("[").rstrip("]")
        if arg and arg not in {"...", "…"}:
            out.append(arg)
    return out


def doc_commands(paths: list[Path] = DOCS, root: Path = ROOT) -> list[DocCommand]:
    commands: list[DocCommand] = []
    for path in paths:
        name = path.relative_to(root).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        block: list[tuple[int, str]] | None = None
        language = ""
        for number, line in enumerate(lines, 1):
            fence = FENCE.match(line)
            if fence:
                if block is None:
                    block, language = [], fence.group(2).lower()
                    continue
                if language not in NOT_SHELL:
                    commands += _block_commands(name, block, prompts=language == "console")
                block = None
                continue
            if block is not None:
                block.append((number, line))
                continue
            for span in INLINE.finditer(line):
                code = span.group(1).strip()
                if code == "vlrun" or code.startswith(("vlrun ", ".venv/bin/vlrun")):
                    for argv in _commands_in(code):
                        commands.append(DocCommand(f"{name}:{number}", code, argv))
    return commands


def _block_commands(name: str, block: list[tuple[int, str]], *, prompts: bool) -> list[DocCommand]:
    # A block with "$ " prompts shows output too: only the prompted lines are commands.
    prompts = prompts or any(line.lstrip().startswith("$ ") for _, line in block)
    commands: list[DocCommand] = []
    pending, start = "", 0
    for number, line in block:
        if prompts and not pending:
            if not line.lstrip().startswith("$ "):
                continue
            line = line.lstrip()[2:]
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):  # continued on the next line
            pending += line.rstrip()[:-1] + " "
            continue
        text, pending = pending + line, ""
        for argv in _commands_in(text):
            commands.append(DocCommand(f"{name}:{start}", text.strip(), argv))
    return commands


def parse_problem(argv: tuple[str, ...]) -> str | None:
    """None when click resolves ``vlrun ARGV`` to a command that has every option named;
    else what is wrong. Nothing runs: only the parser and the command lookup."""
    command: click.Command = cli
    name, parent, args = "vlrun", None, list(argv)
    while True:
        ctx = click.Context(command, info_name=name, parent=parent)
        parser = command.make_parser(ctx)
        try:
            _, rest, _ = parser.parse_args(args=list(args))
        except click.NoSuchOption as exc:
            return f"{ctx.command_path}: {exc.format_message()}"
        except click.BadOptionUsage:  # prose names an option without its value: it exists
            return None
        if not isinstance(command, click.Group):
            if rest and not ctx.allow_extra_args:
                return f"{ctx.command_path}: unexpected extra arguments {rest}"
            return None
        if not rest:
            return None  # `vlrun`, `vlrun --help`, `vlrun tools`
        try:
            name_found, sub, args = command.resolve_command(ctx, rest)
        except click.UsageError as exc:
            return f"{ctx.command_path}: {exc.format_message()}"
        if sub is None or name_found is None:
            return f"{ctx.command_path}: no such command {rest[0]!r}"
        command, name, parent = sub, name_found, ctx


COMMANDS = doc_commands()


def test_the_docs_have_command_lines_to_check() -> None:
    assert len(COMMANDS) > 100
    files = {c.where.split(":")[0] for c in COMMANDS}
    assert {"README.md", "docs/testing.md", "docs/runner.md", "docs/emulator.md"} <= files


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_every_vlrun_command_line_in_the_docs_parses(command: DocCommand) -> None:
    problem = parse_problem(command.argv)
    assert problem is None, f"{command.where}: `{command.text}`: {problem}"


@pytest.mark.parametrize(
    ("line", "wrong"),
    [
        ("vlrun emulate --script model.yaml", "--script"),
        ("vlrun check --formt github profiles/", "--formt"),
        ("vlrun tools list --profil P", "--profil"),
        ("vlrun nosuchcommand --help", None),  # `vlrun X` is `vlrun run X`, whose --help exists
        ("vlrun profiles/weather.yaml --txt", "--txt"),
        ("vlrun compile", None),
        ("vlrun serve --serve-file", None),  # prose naming an option: it exists
        ("vlrun explain a.yaml b.yaml", "unexpected extra"),
        ("AZURE_VOICELIVE_ENDPOINT=x vlrun test --jobs 2 tests/scenarios | tee out", None),
        ("vlrun schema [--scenario] > s.json", None),
        ("vlrun flow PROFILE --format mermaid|dot|text", None),
        ("vlrun serve --serve-file serve.yaml --endpoint URL --port 8080", None),
    ],
)
def test_the_checker_finds_options_that_do_not_exist(line: str, wrong: str | None) -> None:
    (argv,) = _commands_in(line)
    problem = parse_problem(argv)
    if wrong is None:
        assert problem is None, problem
    else:
        assert problem is not None and wrong in problem, problem


def test_commands_are_found_in_blocks_inline_code_and_continued_lines(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Run `vlrun check profiles/` first, not `vlrun-thing`.\n"
        "```console\n$ vlrun emulate --port 8765\nvlrun Voice Live EMULATOR listening\n```\n"
        "```bash\nexport X=1\n.venv/bin/vlrun test tests/scenarios \\\n"
        "  --jobs 2  # parallel\n```\n"
        "```yaml\nentry: vlrun check --nonsense\n```\n",
        encoding="utf-8",
    )
    found = [(c.where.rsplit(":", 1)[1], c.argv) for c in doc_commands([doc], tmp_path)]
    assert found == [
        ("1", ("check", "profiles/")),
        ("3", ("emulate", "--port", "8765")),
        ("8", ("test", "tests/scenarios", "--jobs", "2")),
    ]


def test_no_figure_that_goes_stale_the_test_count() -> None:
    """A hand-written test count is wrong a week later (the README said 870 at over 1,500)."""
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\b\d[\d,]* tests\b", text), path.name


def test_the_readme_says_where_mocked_tools_show() -> None:
    """Only the start banner says "mocked from ..." (the [tool] lines do not)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "the tool line then says" not in readme
    assert "mocked from tools/weather.mocks.yaml" in readme


def test_the_github_actions_example_installs_vlrun_from_source() -> None:
    """`pip install vlrun` installs nothing (vlrun is not on PyPI): every install in the
    workflow is of a path or a git URL."""
    example = yaml.safe_load((ROOT / "docs" / "examples" / "github-actions.yml").read_text())
    runs = [s["run"] for job in example["jobs"].values() for s in job["steps"] if "run" in s]
    installs = [r for r in runs if "pip install" in r]
    assert installs
    for run in installs:
        words = _tokens(run.split("pip install", 1)[1])
        targets = [w for w in words if not w.startswith("-")]
        assert targets and all(t.startswith((".", "/", "git+")) or "@ git+" in t for t in targets)


def test_pytest_markers_name_scripts_that_exist() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for script in re.findall(r"scripts/[\w.-]+", text):
        assert (ROOT / script).is_file(), script
