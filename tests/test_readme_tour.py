"""The README's "A short tour" snippet, exactly as written, where people type it (issue 15, item 11).

Run as a plain script without a main guard, from stdin (``python -``) and in an interactive session
(``python -i``, where the last line echoes the Verdict) and a Jupyter notebook: each used to fail with "a verifier worker failed
to start ... Worker processes re-import the main module", because the grading workers re-ran the
caller's script. The snippet's ``data_dir="../shared/data"`` is honoured by running it from a folder
whose ``../shared/data`` is ``$EVALGYM_DATA_DIR``. Also: a grading function defined in the caller's
``__main__`` (a script, a notebook cell) runs in the pool's workers.

    EVALGYM_DATA_DIR=/work/shared/data .venv/bin/python -m pytest tests/test_readme_tour.py -q
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get("EVALGYM_DATA_DIR", "")


def tour_snippet() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A short tour", 1)[1]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "README: no ```python block under '## A short tour'"
    return m.group(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder whose ../shared/data is the data dir, as the snippet expects."""
    if not (DATA and (Path(DATA) / "gsm8k").is_dir()):
        pytest.skip("EVALGYM_DATA_DIR with gsm8k is needed to run the tour")
    base = tmp_path_factory.mktemp("tour")
    (base / "shared").mkdir()
    (base / "shared" / "data").symlink_to(Path(DATA).resolve())
    (base / "work").mkdir()
    return base / "work"


def _run(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0 and "Traceback" not in out.stderr, (
        f"{args} exited {out.returncode}\nstdout:\n{out.stdout[-2000:]}\nstderr:\n{out.stderr[-3000:]}")
    return out


def test_snippet_has_no_main_guard():
    assert "__main__" not in tour_snippet()  # the point: run as most people write a first script


def test_tour_as_a_script(workdir: Path):
    script = workdir / "tour.py"
    script.write_text(tour_snippet(), encoding="utf-8")
    _run([str(script)], workdir)


def test_tour_from_stdin(workdir: Path):
    _run(["-"], workdir, stdin=tour_snippet())


def test_tour_in_an_interactive_session(workdir: Path):
    out = _run(["-i", "-q"], workdir, stdin=tour_snippet() + "\n")
    # the echo is the README's promised line: GSM8K test problem 0's gold is 18, so the boxed 18 is correct
    assert "Verdict(reward=1.0, correct=True, error=None" in out.stdout and "verifier='math'" in out.stdout, out.stdout


def test_tour_as_a_script_grades_18_correct(workdir: Path):
    """The snippet as written, then its verdict printed: the README's comment is what it gives."""
    script = workdir / "tour_checked.py"
    script.write_text(tour_snippet() + "\nprint(repr(info['verdict']))\nprint(repr(info['messages']))\n",
                      encoding="utf-8")
    out = _run([str(script)], workdir)
    assert "Verdict(reward=1.0, correct=True, error=None" in out.stdout, out.stdout
    assert "Janet" in out.stdout, out.stdout   # problem 0 of the test split: Janet's ducks (gold 18)


MAIN_GRADER = '''
from evalgym.verifiers.pool import BudgetPool

def double(x):
    return 2 * x

pool = BudgetPool(workers=2)
outs = pool.map(double, [(i,) for i in range(5)], budget_s=5.0)
print([o.value for o in outs], [o.status for o in outs])
'''


def test_grading_function_defined_in_main(tmp_path: Path):
    out = _run(["-"], tmp_path, stdin=MAIN_GRADER)
    assert "[0, 2, 4, 6, 8] ['ok', 'ok', 'ok', 'ok', 'ok']" in out.stdout, out.stdout


def test_tour_in_a_notebook(workdir: Path, monkeypatch):
    """A real Jupyter kernel (ipykernel, run by nbclient): the tour in one cell, a grading function defined
    in the notebook in another."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this checkout's evalgym
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(tour_snippet()), nbformat.v4.new_code_cell(MAIN_GRADER)]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}}).execute()
    tour_out = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in nb.cells[0].outputs)
    assert "Verdict(reward=1.0, correct=True, error=None" in tour_out and "verifier='math'" in tour_out, nb.cells[0].outputs
    grader_out = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "[0, 2, 4, 6, 8] ['ok', 'ok', 'ok', 'ok', 'ok']" in grader_out, nb.cells[1].outputs
