"""The docs: README.md fits one screen, every relative link in README.md and docs/*.md resolves, and the check
behind `make docs-check` (tools/docgen.py) fails, naming README.md and the block, when a number in the demo's
output is edited by hand."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import docgen  # noqa: E402  (tools/ is not a package)

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages written on other branches that land after this one; a link to them may dangle until they do.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _strip_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _strip_code(text: str) -> str:
    """TEXT without fenced blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", _strip_fences(text))


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of PATH's headings: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.*)$", _strip_fences(path.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_strip_code(page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in relative_links(page):
        file, _, anchor = unquote(target).partition("#")
        dest = (page.parent / file).resolve() if file else page
        name = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
        assert dest.exists(), f"{page.name}: link {target} -> {name} does not exist"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: link {target}: no heading #{anchor} in {name}"


def test_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("see [a](a.md), `[not](a link)`, [web](https://x.org) and ![fig](fig.png)\n")
    assert relative_links(page) == ["a.md", "fig.png"]


def test_readme_fits_one_screen():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines"
    head = "\n".join(lines[:40])
    assert "make demo" in head and "make test" in head


def test_every_page_opens_with_a_title_and_a_summary():
    for page in PAGES[1:]:
        lines = page.read_text().splitlines()
        assert lines[0].startswith("# "), page.name
        summary = [line for line in lines[1:5] if line.strip()]
        assert len(summary) >= 2 and not summary[0].startswith(("```", "#", "<!--")), page.name


def test_reference_lists_every_command():
    text = (ROOT / "docs" / "reference.md").read_text()
    for name in docgen.commands():
        assert f"$ cnnexp {name} --help" in text, name


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(ROOT / "configs", root / "configs")
    (root / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "init.png", root / "docs" / "init.png")
    shutil.copy(ROOT / "README.md", root / "README.md")
    return root


def test_check_passes_on_the_committed_readme_and_fails_naming_an_edited_number(tmp_path):
    root = _copy(tmp_path)
    readme = root / "README.md"
    assert docgen.generate(root, [readme], check=True) == []

    text = readme.read_text()
    start = text.index('sh("cnnexp sweep configs/init.yaml")')
    number = re.compile(r"\d\.\d+e-\d\d").search(text, start)  # the first number of the demo's table
    readme.write_text(text[:number.start()] + "9.999e-99" + text[number.end():])
    problems = docgen.generate(root, [readme], check=True)
    assert len(problems) == 1
    assert problems[0].startswith("README.md:") and "cnnexp sweep configs/init.yaml" in problems[0]
    assert "9.999e-99" in problems[0]
    assert readme.read_text() != text  # the check wrote nothing back


def test_check_compares_figures_with_a_tolerance(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(path, y):
        fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
        ax.plot([0, 1, 2], y)
        fig.savefig(path)
        plt.close(fig)

    draw(tmp_path / "a.png", [0, 1, 2])
    draw(tmp_path / "b.png", [0, 1, 2])
    draw(tmp_path / "c.png", [2, 0, 2])
    assert docgen.compare_figure(tmp_path / "a.png", tmp_path / "b.png") is None
    assert "RMS" in docgen.compare_figure(tmp_path / "a.png", tmp_path / "c.png")
    assert "missing" in docgen.compare_figure(tmp_path / "nothing.png", tmp_path / "a.png")


def test_check_exits_nonzero_naming_the_file(tmp_path):
    """`make docs-check` is `python tools/docgen.py --check`: a stale page makes it exit 1 and name the page."""
    root = _copy(tmp_path)
    (root / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "docgen.py", root / "tools" / "docgen.py")
    (root / "docs" / "x.md").write_text('# x\n\n<!-- [[[cog sh("echo fresh") ]]] -->\n```\n$ echo stale\n```\n'
                                        "<!-- [[[end]]] -->\n")
    p = subprocess.run([sys.executable, str(root / "tools" / "docgen.py"), "--check", str(root / "docs" / "x.md")],
                       capture_output=True, text=True, cwd=root)
    assert p.returncode == 1
    assert "docs/x.md:3: block `sh(\"echo fresh\")`" in p.stderr
