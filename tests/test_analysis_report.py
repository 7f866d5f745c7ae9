"""`study report NAME` / `study report table2`: files written (atomically), plots valid, paper order, the error case.
MLflow is replaced by hand-made run records (monkeypatched `study.tracking` functions)."""

import sys

import numpy as np
import pytest

from study.config import load_config
from PIL import Image

from analysis import report as report_mod
from analysis.report import report_command
from study.errors import UserError
from tests.analysis_helpers import davis, decoder_records, mask_ratio_records, record

tracking = pytest.importorskip("study.tracking")


@pytest.fixture
def runs(monkeypatch):
    """Point study.tracking at a dict {(study, budget): records}."""
    store: dict[tuple[str, str], list[dict]] = {}

    def fetch(study, budget=None, tracking_uri=None):
        return next((recs for (s, b), recs in store.items() if s == study and budget in (None, b)), [])

    monkeypatch.setattr(tracking, "fetch_study_runs", fetch)
    monkeypatch.setattr(tracking, "studies_with_runs", lambda tracking_uri=None: sorted(store))
    return store


def contact_sheet(folder, seed):
    """A fake run artifact folder with eval/davis/contact_<seq>.png (what evaluate writes)."""
    sheet = folder / "eval" / "davis" / "contact_seq0.png"
    sheet.parent.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (96, 384, 3), dtype=np.uint8)).save(sheet)
    return str(folder)


def assert_png(path, min_kb=5):
    assert path.is_file() and path.stat().st_size > min_kb * 1024, path
    with Image.open(path) as im:
        im.verify()
        assert im.format == "PNG"


def test_study_report_files(runs, tmp_path):
    recs = mask_ratio_records()
    recs[2]["artifact_dir"] = contact_sheet(tmp_path / "art075", 0)  # 0.75 is the best cell
    recs[4]["artifact_dir"] = contact_sheet(tmp_path / "art095", 1)  # 0.95 the worst finished one
    runs[("mask_ratio", "cpu")] = recs
    out = report_command("mask_ratio", out=str(tmp_path / "rep"))
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "metric.png", "propagation.png", "report.md",
                                                     "table.html", "table.tex"]
    md = (out / "report.md").read_text()
    assert md.startswith("# Mask ratio (the paper's Table 2d)")
    assert "Budget: **cpu**" in md and "**Question.** How much of f2" in md
    assert "| model | ViT-mini/8 at 64 px, siamese encoder, cross-self decoder (128-d, 2 blocks) |" in md
    epochs = load_config("cpu").train.epochs  # the records carry the real cpu budget's resolved config
    assert f"| schedule | {epochs} effective epochs" in md and "| seeds | 0, 1 " in md
    assert "| 0.75 | **56.2 ± 0.3** |" in md and "| 0.9 | missing |" in md
    for name in ("metric.png", "loss.png", "propagation.png"):
        assert f"]({name})" in md
        assert_png(out / name)
    assert r"\toprule" in (out / "table.tex").read_text()
    assert "<table" in (out / "table.html").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_report_without_contact_sheets_skips_the_strip(runs, tmp_path):
    runs[("decoder", "cpu")] = decoder_records()
    out = report_command("decoder", out=str(tmp_path / "rep"))
    assert not (out / "propagation.png").exists()
    assert "propagation.png" not in (out / "report.md").read_text()
    assert_png(out / "metric.png")


def test_report_replaces_old_report_and_keeps_it_on_failure(runs, tmp_path, monkeypatch):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()
    target = tmp_path / "rep"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    report_command("mask_ratio", out=str(target))
    assert not (target / "stale.txt").exists() and (target / "report.md").is_file()
    before = (target / "report.md").read_text()

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod, "write_study_report", broken)
    with pytest.raises(RuntimeError):
        report_command("mask_ratio", out=str(target))
    assert (target / "report.md").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_table2_assembles_studies_in_paper_order(runs, tmp_path):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()  # 2d
    runs[("decoder", "cpu")] = decoder_records()  # 2b
    runs[("patch_size", "cpu")] = [record("patch_size", "8", 0, metrics=davis(48.0, 47.0, 49.0)),
                                   record("patch_size", "16", 0, metrics=davis(45.0, 44.0, 46.0))]  # Table 1
    runs[("mask_strategy", "cpu")] = [record("mask_strategy", "random", 0, metrics=davis(50.0, 49.0, 51.0))]  # none
    runs[("encoder", "cpu")] = [record("encoder", "siamese", 0, status="FAILED", failure="x")]  # nothing finished
    out = report_command("table2", out=str(tmp_path / "t2"))
    md = (out / "report.md").read_text()
    headings = [ln for ln in md.splitlines() if ln.startswith("## (")]
    assert headings == ["## (a) Decoder [cpu, the paper's Table 2b]", "## (b) Mask ratio [cpu, the paper's Table 2d]",
                        "## (c) Patch size [cpu, the paper's Table 1]", "## (d) Mask placement [cpu]"]
    assert "| 8 | **48.0** | 71.4 [P, 2000 ep.] |" in md
    tex = (out / "table.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 4 and tex.count(r"\bottomrule") == 4
    for prefix in ("decoder_cpu_", "mask_ratio_cpu_", "patch_size_cpu_", "mask_strategy_cpu_"):
        assert_png(out / f"{prefix}metric.png")
        assert f"]({prefix}metric.png)" in md


def test_no_runs_is_a_user_error(runs, tmp_path):
    with pytest.raises(UserError, match=r"no finished runs for study mask_ratio; run `study run mask_ratio` first"):
        report_command("mask_ratio", out=str(tmp_path / "rep"))
    with pytest.raises(UserError, match=r"\[paper\]; run `study run mask_ratio --budget paper` first"):
        report_command("mask_ratio", budget="paper", out=str(tmp_path / "rep"))
    with pytest.raises(UserError, match="no study has finished runs"):
        report_command("table2", out=str(tmp_path / "t2"))
    with pytest.raises(UserError, match="no study named 'nope'"):
        report_command("nope", out=str(tmp_path / "rep"))
    assert list(tmp_path.iterdir()) == []


def test_cli_no_runs_exits_2_with_one_line(runs, tmp_path, monkeypatch, capsys):
    from study import cli

    monkeypatch.setattr(sys, "argv", ["study", "report", "mask_ratio", "--out", str(tmp_path / "rep")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: no finished runs for study mask_ratio; run `study run mask_ratio` first"]


@pytest.mark.slow
def test_analysis_never_imports_torch_or_mlflow():
    import subprocess

    code = ("import sys, analysis.report, analysis.plots, analysis.tables, analysis.stats, analysis.paper; "
            "print('torch' in sys.modules, 'mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
