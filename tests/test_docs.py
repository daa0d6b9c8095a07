"""Everything the README and docs/ show in Python runs as shown, and prints what they say.

A Python block may be followed by its output: a ``text`` block whose first line is
``# prints ...``. The block's stdout must hold those lines in order (``...`` skips any
number of lines), their words exactly and every number within :data:`TOLERANCE` of the
one shown; a figure that differs between CPUs is shown as the range it takes on them,
``LO..HI`` (``python eval/doc_outputs.py`` writes such blocks), and must print within it.
So a stale figure fails the suite. A sentence right after a Python block may not quote a
printed number: numbers a block prints belong in its output block.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A printed number may differ from the one shown by this much (relative): the spread between
# CPUs of the README tour's figures (eval/results/noise_floor.md plays other CPUs on one
# machine; docs/trust.md), well below what a stale figure moves (28.83 shown, 31.41 printed).
TOLERANCE = 0.02
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
BLOCK = re.compile(r"```python\n(.*?)```\n(?:\n```text\n(# prints[^\n]*)\n(.*?)```\n)?(.*?)(?=\n\n|\Z)", re.S)


def blocks(page: Path) -> list[tuple[str, list[str] | None, str]]:
    """(code, expected output lines or None, the text right after) of every Python block."""
    return [(code, None if caption is None else output.splitlines(), after)
            for code, caption, output, after in BLOCK.findall(page.read_text())]


BLOCKS = [(page, i, code, expected) for page in PAGES for i, (code, expected, _) in enumerate(blocks(page))]


def shape(line: str) -> tuple[str, list[tuple[float, float]]]:
    """A line's words with its numbers taken out, and each number as the range it may take
    (a number alone: itself; ``LO..HI``: that range)."""
    values = []

    def take(m: re.Match) -> str:
        values.append((float(m.group(1)), float(m.group(2))) if m.group(2) else (float(m.group(1)),) * 2)
        return "#"
    return re.sub(rf"({NUMBER.pattern})(?:\.\.({NUMBER.pattern}))?", take, line.strip()), values


def missing_lines(expected: list[str], printed: str, tolerance: float = TOLERANCE) -> list[str]:
    """The expected lines (``...``: any lines) not found in order in ``printed``, each with why."""
    actual, at, problems = printed.splitlines(), 0, []
    skip = False
    for line in expected:
        if line.strip() == "...":
            skip = True
            continue
        words, numbers = shape(line)
        for j in range(at, len(actual) if skip else min(at + 1, len(actual))):
            got_words, got = shape(actual[j])
            if got_words == words:
                off = [(lo, hi, g) for (lo, hi), (g, _) in zip(numbers, got)
                       if not lo - tolerance * abs(lo) <= g <= hi + tolerance * abs(hi)]
                if off:
                    problems.append(f"{line!r}: printed {actual[j]!r} (" + ", ".join(
                        f"{g:g} for {lo:g}" + (f"..{hi:g}" if hi != lo else "") for lo, hi, g in off) + ")")
                at = j + 1
                break
        else:
            problems.append(f"{line!r}: not printed" + (f" (next printed line: {actual[at]!r})" if at < len(actual)
                                                          else ""))
        skip = False
    return problems


@pytest.mark.integration
@pytest.mark.parametrize("page,index,code,expected", BLOCKS, ids=[f"{p.name}-{i}" for p, i, _, _ in BLOCKS])
def test_a_python_block_of_the_docs_runs_and_prints_what_the_docs_say(tmp_path, page, index, code, expected):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, f"{page.name} block {index}:\n{r.stderr[-3000:]}"
    if expected is not None:
        problems = missing_lines(expected, r.stdout)
        assert not problems, f"{page.name} block {index} printed other figures:\n" + "\n".join(problems) + \
            f"\n--- printed:\n{r.stdout}"


def test_the_output_check_catches_a_stale_figure_and_passes_a_close_one():
    printed = "converted 53 sites\nPSNR 31.41 dB\nenergy 0.566 of the ANN\nsummary line"
    assert missing_lines(["converted 53 sites", "PSNR 31.40 dB", "..."], printed) == []  # within the tolerance
    assert missing_lines(["...", "energy 0.566 of the ANN"], printed) == []
    stale = missing_lines(["converted 53 sites", "PSNR 28.83 dB"], printed)
    assert len(stale) == 1 and "31.41 for 28.83" in stale[0]
    assert "not printed" in missing_lines(["PSNR 31.41 dB (median)"], printed)[0]  # other words
    assert "not printed" in missing_lines(["converted 53 sites", "energy 0.566 of the ANN"], printed)[0]  # no skip
    # a figure that differs between CPUs, shown as its range over them
    assert missing_lines(["converted 53 sites", "PSNR 28.83..31.41 dB"], printed) == []
    assert "31.41 for 28.83..30.5" in missing_lines(["converted 53 sites", "PSNR 28.83..30.5 dB"], printed)[0]


def test_printed_numbers_live_in_output_blocks_not_in_prose():
    for page in PAGES:
        for i, (_, _, after) in enumerate(blocks(page)):
            quoted = re.search(r"\bprints?\b[^.]*?\d+\.\d+", after)
            assert quoted is None, f"{page.name} block {i}: put the printed figures in an output block " \
                                   f"(```text starting '# prints'), not prose: {after[:200]!r}"


def test_every_doc_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 12_500  # about 12 KB at most
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, page.name


def test_the_readme_headline_table_is_what_the_results_files_hold(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "eval"))
    import headline

    readme = (ROOT / "README.md").read_text()
    assert headline.with_table(readme) == readme, "README.md's headline table is stale: run python eval/headline.py"
    # and the check bites: one changed figure in the table is a stale table
    current = headline.table()
    stale = readme.replace(current, current.replace("| 0.527 |", "| 0.526 |"), 1)
    assert stale != readme and headline.with_table(stale) == readme
