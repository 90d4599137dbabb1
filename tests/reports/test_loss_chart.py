"""The loss chart: a real image of the real losses (read back pixel by pixel), and a note when it cannot be drawn."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hkreports import FACTS, make_report

from healthkit.reporting.chart import EVAL_COLOR, PNG_KEY, TRAIN_COLOR, write_loss_chart
from healthkit.reporting.history import write_history

Image = pytest.importorskip("PIL.Image", reason="Pillow (a matplotlib dependency) reads the PNG back")
pytest.importorskip("matplotlib", reason="the chart needs matplotlib (extra `charts`)")


def rgb(hex_color: str) -> tuple[int, int, int]:
    return tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))


def near(img, x: float, y: float, color: tuple[int, int, int], radius: int = 2, tol: int = 60) -> bool:
    """Is there a pixel of ``color`` within ``radius`` pixels of (x, y)?"""
    w, h = img.size
    for dx in range(-radius, radius + 1):
        for dy in range(-radius, radius + 1):
            px, py = round(x) + dx, round(y) + dy
            if (
                0 <= px < w
                and 0 <= py < h
                and sum(abs(a - b) for a, b in zip(img.getpixel((px, py))[:3], color)) <= tol
            ):
                return True
    return False


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chart")
    c = write_loss_chart(FACTS, folder, "20240501T120000Z")
    img = Image.open(c.path)
    img.load()
    return c, img, json.loads(img.text[PNG_KEY])


def test_the_png_holds_the_real_series(chart):
    c, img, meta = chart
    assert (
        c.path.name == "loss-20240501T120000Z.png"
        and (c.path.parent / "latest-loss.png").read_bytes() == c.path.read_bytes()
    )
    assert meta["train"] == [[float(s), pytest.approx(v)] for s, v in FACTS["log_history"]["train"]]
    assert meta["eval"] == [[float(s), pytest.approx(v)] for s, v in FACTS["log_history"]["eval"]]
    assert img.size == (800, 450) and img.format == "PNG"


def to_px(meta, step: float, loss: float) -> tuple[float, float]:
    left, top, right, bottom = meta["axes_px"]
    (x0, x1), (y0, y1) = meta["xlim"], meta["ylim"]
    return left + (step - x0) / (x1 - x0) * (right - left), bottom - (loss - y0) / (y1 - y0) * (bottom - top)


def test_every_loss_is_drawn_where_its_value_is(chart):
    _, img, meta = chart
    train, evals = FACTS["log_history"]["train"], FACTS["log_history"]["eval"]
    missing = [p for p in train if not near(img, *to_px(meta, *p), rgb(TRAIN_COLOR))]
    assert not missing, f"training loss not drawn at {missing[:5]}"
    missing = [p for p in evals if not near(img, *to_px(meta, *p), rgb(EVAL_COLOR))]
    assert not missing, f"validation loss not drawn at {missing[:5]}"


def test_the_curve_is_not_drawn_where_the_values_are_not(chart):
    _, img, meta = chart
    for step, loss in FACTS["log_history"]["train"][20:80:10]:
        x, y = to_px(meta, step, loss)
        assert not near(img, x, y - 25, rgb(TRAIN_COLOR)) and not near(img, x, y + 25, rgb(TRAIN_COLOR))
    # the gap: at the last evaluation, validation is drawn well above training
    x, y_eval = to_px(meta, *FACTS["log_history"]["eval"][-1])
    _, y_train = to_px(meta, *FACTS["log_history"]["train"][-1])
    assert y_train - y_eval > 50  # 0.4 of loss is many pixels apart on this scale


def test_report_links_the_chart_and_states_the_gap(tmp_path):
    write_history(make_report(), tmp_path)
    md = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert "![Training and validation loss over steps](loss-20240501T120000Z.png)" in md
    assert "10 validation evaluations (latest 1.4 at step 1000, gap +0.4)" in md
    assert (tmp_path / "loss-20240501T120000Z.png").is_file()
    assert json.loads((tmp_path / "latest.json").read_text())["chart"]["file"] == "loss-20240501T120000Z.png"


def test_without_matplotlib_the_report_renders_with_a_note(tmp_path, monkeypatch):
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)  # import raises ImportError
    write_history(make_report(), tmp_path)
    md = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert "No loss chart: matplotlib is not installed (pip install 'healthkit[charts]')." in md
    assert "![" not in md and not list(tmp_path.glob("*.png"))
    assert "## 📊 CURRENT TRAINING STATUS" in md  # the rest of the report is all there


def test_no_history_gives_a_note_not_an_empty_chart(tmp_path):
    write_history(make_report(facts={"training": {"state": "idle"}}), tmp_path)
    md = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert "no loss history (log_history)" in md and not list(tmp_path.glob("*.png"))


def test_garbage_points_are_skipped(tmp_path):
    facts = {
        "log_history": {"train": [[1, 2.0], [2, None], ["x", 1], [3, float("nan")], [4, 1.5], [5]], "eval": "nope"}
    }
    c = write_loss_chart(facts, tmp_path, "s")
    assert (c.train_points, c.eval_points) == (2, 0)
    assert "no validation loss logged" in c.caption


def test_the_plain_audit_never_imports_matplotlib(tmp_path):
    """The chart costs a second of imports: only a folder --output may pay it."""
    script = (
        "import sys, healthkit.core.api as api\n"
        "from healthkit.reporting.render import render\n"
        "from healthkit.core.registry import Registry, check\n"
        "from healthkit import CheckOutput\n"
        f"facts = {FACTS!r}\n"
        "@check('x', title='X')\n"
        "def x(ws): return CheckOutput(facts=facts)\n"
        "reg = Registry(); reg.add(x)\n"
        "r = api.audit(sys.argv[1], registry=reg)\n"
        "for fmt in ('md', 'json', 'prom', 'junit', 'nagios'): render(r, fmt)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'numpy', 'PIL')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_chart_that_fails_to_draw_costs_only_the_chart(tmp_path, monkeypatch):
    import healthkit.reporting.chart

    def broken(*a, **k):
        raise RuntimeError("font cache not writable")

    monkeypatch.setattr(healthkit.reporting.chart, "write_loss_chart", broken)
    write_history(make_report(), tmp_path)
    md = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert "No loss chart: drawing it failed (RuntimeError: font cache not writable)." in md
    assert "## 🚨 CRITICAL ISSUES FOUND" in md


def test_an_unchanged_history_reuses_the_last_chart_and_a_changed_one_is_redrawn(tmp_path, monkeypatch):
    import matplotlib.figure

    from healthkit.reporting.chart import png_text

    first = write_loss_chart(FACTS, tmp_path, "20240501T120000Z")
    assert (
        json.loads(png_text(first.path.read_bytes()))["train"]
        == json.loads(Image.open(first.path).text[PNG_KEY])["train"]
    )

    def no_drawing(*a, **k):
        raise AssertionError("redrawn although the series did not change")

    with monkeypatch.context() as m:
        m.setattr(matplotlib.figure, "Figure", no_drawing)
        again = write_loss_chart(FACTS, tmp_path, "20240501T121500Z")
    assert again.path.name == "loss-20240501T121500Z.png" and again.path.read_bytes() == first.path.read_bytes()
    assert again.caption == first.caption

    moved = {"log_history": {**FACTS["log_history"], "train": FACTS["log_history"]["train"] + [[2000, 0.5]]}}
    redrawn = write_loss_chart(moved, tmp_path, "20240501T123000Z")
    assert json.loads(png_text(redrawn.path.read_bytes()))["train"][-1] == [2000.0, 0.5]
    assert (tmp_path / "latest-loss.png").read_bytes() == redrawn.path.read_bytes()


def test_a_chart_from_another_healthkit_version_is_redrawn(tmp_path, monkeypatch):
    import healthkit._version

    old = write_loss_chart(FACTS, tmp_path, "20240501T120000Z")
    monkeypatch.setattr(healthkit._version, "__version__", "9.9.9")
    new = write_loss_chart(FACTS, tmp_path, "20240501T121500Z")
    from healthkit.reporting.chart import png_text

    assert json.loads(png_text(new.path.read_bytes()))["drawn_by"] == "healthkit 9.9.9"
    assert json.loads(png_text(old.path.read_bytes()))["drawn_by"] != "healthkit 9.9.9"
