"""`study report NAME` / `study report table2`: where reports land and what they keep, the files and their contents
(provenance, table.csv, the summary at the top), plots valid, paper order, the error cases.
MLflow is replaced by hand-made run records (monkeypatched `study.tracking` functions)."""

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import study.tracking as tracking
from analysis import report as report_mod
from analysis.report import report_command
from study.config_load import load_config
from study.errors import UserError
from tests.analysis_helpers import davis, mask_ratio_records, record

REPO = Path(__file__).resolve().parents[1]
TAGS = {"study.command": "study run mask_ratio --budget cpu --seeds 2 --set train.blr=0.001",
        "study.git_commit": "0123456789abcdef0123456789abcdef01234567",
        "study.versions": json.dumps({"torch": "2.14.1", "python": "3.12.3", "optuna": "4.6.0", "mlflow": "3.17.0",
                                      "timm": "1.0.22", "numpy": "2.3.5"}),
        "study.overrides": json.dumps(["train.blr=0.001"]), "study.state_dir": "/data/state",
        "study.storage": "sqlite:////data/state/optuna.db", "study.role": "parent"}


@pytest.fixture
def runs(monkeypatch):
    """Point study.tracking at a dict {(study, budget): records}; parent-run tags in runs.tags {(study, budget): {...}}."""
    class Store(dict):
        tags: dict[tuple[str, str], dict]

    store = Store()
    store.tags = tags = {}

    def fetch(study, budget=None, tracking_uri=None, overrides=()):
        return next((recs for (s, b), recs in store.items() if s == study and budget in (None, b)), [])

    monkeypatch.setattr(tracking, "fetch_study_runs", fetch)
    monkeypatch.setattr(tracking, "fetch_parent_run", lambda study, budget, tracking_uri=None, overrides=():
                        {"tags": tags[study, budget]} if (study, budget) in tags else None)
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


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_study_report_files(runs, tmp_path):
    recs = mask_ratio_records()
    recs[2]["artifact_dir"] = contact_sheet(tmp_path / "art075", 0)  # 0.75 has the highest mean
    recs[4]["artifact_dir"] = contact_sheet(tmp_path / "art095", 1)  # 0.95 the lowest finished one
    runs[("mask_ratio", "cpu")] = recs
    out = report_command("mask_ratio", out=str(tmp_path / "rep"))
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "metric.png", "propagation.png", "report.md",
                                                     "table.csv", "table.html", "table.tex"]
    md = (out / "report.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# Mask ratio (the paper's Table 2d)"
    assert lines[4].startswith("**Does training help?** Yes: every trained cell beats the random-init encoder")
    assert lines[6].startswith("**Finding.** Over 2 seeds per cell, 0.75 beats 0.95 by 3.9 DAVIS J&F points "
                               "(95% CI [+2.1, +5.7]), the opposite of the paper's direction")
    assert "budget **cpu**" in md and "**Question.** How much of f2" in md
    assert "| model | ViT-mini/8 at 64 px, siamese encoder, cross-self decoder (128-d, 2 blocks) |" in md
    epochs = load_config("cpu").train.epochs  # the records carry the real cpu budget's resolved config
    assert f"| schedule | {epochs} effective epochs" in md and "| seeds | 0, 1 " in md
    assert "| 0.75 | **56.2 ± 0.3** |" in md and "| 0.9 | missing |" in md
    assert "highest mean: 0.75" not in md  # the strip's labels are in the picture, the caption says what it shows
    for name in ("metric.png", "loss.png", "propagation.png"):
        assert f"]({name})" in md
        assert_png(out / name)
    assert r"\toprule" in (out / "table.tex").read_text()
    assert "<table" in (out / "table.html").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_setup_names_the_protocol_and_its_values(runs, tmp_path, monkeypatch):
    """The values come from what the evaluation recorded (eval/<dataset>/summary.json, `params`)."""
    recs = mask_ratio_records()
    art = tmp_path / "art"
    (art / "eval" / "davis").mkdir(parents=True)
    (art / "eval" / "davis" / "summary.json").write_text(json.dumps({"params": {
        "protocol": "paper", "dataset": "davis", "context": "crw", "queue": 20, "neighborhood": 20, "topk": 7,
        "temperature": 0.7, "norm_mask": False, "frames": "exactly 192x352 (aspect ignored)", "short_side": 192,
        "mean": [0.485, 0.456, 0.406], "first_labels": "soft", "nearest": "floor", "pos_embed": "bicubic"}}))
    recs[2]["artifact_dir"] = str(art)
    runs[("mask_ratio", "cpu")] = recs
    md = (report_command("mask_ratio", out=str(tmp_path / "rep")) / "report.md").read_text()
    assert ("| evaluation | label propagation, protocol `paper`; davis (generated set): crw context, 20 context frames, "
            "radius 20, top-7, temperature 0.7, frames exactly 192x352 (aspect ignored), soft first-frame labels, "
            "bicubic position embedding |") in md
    # nothing recorded and nothing to work it out from: said, with the scale the run logged
    recs[2]["artifact_dir"] = None
    monkeypatch.setattr(report_mod, "described_values", lambda params, dataset: None)
    md = (report_command("mask_ratio", out=str(tmp_path / "rep")) / "report.md").read_text()
    short = load_config("cpu").eval.short_side
    assert ("| evaluation | label propagation, protocol `paper`; davis (generated set): values not recorded; frames at "
            f"short side {short} px |") in md


def test_report_lands_in_the_working_directory_and_leaves_the_checkout_alone(runs, tmp_path, monkeypatch):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()
    before = snapshot(REPO / "reports") if (REPO / "reports").is_dir() else {}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(scratch)
    out = report_command("mask_ratio")
    assert out == scratch / "reports" / "mask_ratio" and (out / "report.md").is_file()
    after = snapshot(REPO / "reports") if (REPO / "reports").is_dir() else {}
    assert after == before


def test_an_existing_report_is_updated_file_by_file(runs, tmp_path, monkeypatch):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()
    target = tmp_path / "rep"
    (target / "screenshots").mkdir(parents=True)
    (target / "screenshots" / "mlflow-runs.png").write_bytes(b"a screenshot")
    (target / "notes.md").write_text("mine")
    (target / "report.md").write_text("old report")
    report_command("mask_ratio", out=str(target))
    assert (target / "screenshots" / "mlflow-runs.png").read_bytes() == b"a screenshot"
    assert (target / "notes.md").read_text() == "mine"
    new = (target / "report.md").read_text()
    assert new.startswith("# Mask ratio")

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod.plots, "loss_curves", broken)  # fails after the table, before any file is written
    with pytest.raises(RuntimeError):
        report_command("mask_ratio", out=str(target))
    assert (target / "report.md").read_text() == new
    assert sorted(p.name for p in target.iterdir()) == ["loss.png", "metric.png", "notes.md", "report.md",
                                                        "screenshots", "table.csv", "table.html", "table.tex"]


def test_a_write_that_fails_halfway_leaves_the_old_file(tmp_path, monkeypatch):
    (tmp_path / "report.md").write_text("old report")

    def half_then_full_disk(self, text, encoding=None):
        with open(self, "w") as f:
            f.write(text[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full_disk)
    with pytest.raises(OSError):
        report_mod.write_files(tmp_path, {"report.md": "a new report"})
    monkeypatch.undo()
    assert (tmp_path / "report.md").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_out_that_is_a_file_is_a_user_error(runs, tmp_path):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=r"--out .*/f is a file; give a folder"):
        report_command("mask_ratio", out=str(tmp_path / "f"))


def test_provenance_from_the_parent_run_and_from_now(runs, tmp_path):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()
    runs.tags[("mask_ratio", "cpu")] = TAGS
    md = (report_command("mask_ratio", budget="cpu", out=str(tmp_path / "rep")) / "report.md").read_text()
    prov = md.split("## Provenance")[1]
    assert f"| report command | `study report mask_ratio --budget cpu --out {tmp_path / 'rep'}` |" in prov
    assert "| report made | 20" in prov and "| project commit of the report | `" in prov
    assert "| budget | `cpu` |" in prov
    assert "| study run | `study run mask_ratio --budget cpu --seeds 2 --set train.blr=0.001` |" in prov
    assert "| overrides (`--set`) | `train.blr=0.001` |" in prov
    assert "| project commit of the runs | `0123456789abcdef0123456789abcdef01234567` |" in prov
    assert ("| versions | python 3.12.3, torch 2.14.1, timm 1.0.22, mlflow 3.17.0, optuna 4.6.0, numpy 2.3.5 |"
            in prov)
    assert "| state folder | `/data/state` |" in prov
    assert "| Optuna storage | `sqlite:////data/state/optuna.db` |" in prov
    assert "not recorded" not in prov


def test_provenance_says_not_recorded_for_missing_tags(runs, tmp_path):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()
    runs.tags[("mask_ratio", "cpu")] = {"study.role": "parent", "study.overrides": "[]"}
    prov = (report_command("mask_ratio", out=str(tmp_path / "rep")) / "report.md").read_text().split("## Provenance")[1]
    for field in ("study run", "project commit of the runs", "versions", "state folder", "Optuna storage"):
        assert f"| {field} | not recorded |" in prov
    assert "| overrides (`--set`) | none |" in prov
    runs.tags.clear()
    prov = (report_command("mask_ratio", out=str(tmp_path / "rep")) / "report.md").read_text().split("## Provenance")[1]
    assert "| study run | no parent run found: not recorded |" in prov


def test_table_csv_columns_and_values(runs, tmp_path):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()
    out = report_command("mask_ratio", out=str(tmp_path / "rep"))
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert list(rows[0]) == ["study", "budget", "cell", "role", "is_default", "protocol", "metric", "label", "mean",
                             "std", "n", "delta", "ci_low", "ci_high", "paper_value", "paper_source", "paper_setting",
                             "paper_note", "vs_paper"]
    assert len(rows) == (4 + 1) * 3  # four cells and random init, three DAVIS metrics
    by = {(r["cell"], r["metric"]): r for r in rows}
    r = by[("0.75", "davis.jf_mean")]
    assert (r["role"], r["is_default"], r["protocol"], r["label"], r["n"]) == ("trial", "false", "paper", "DAVIS J&F", "2")
    assert float(r["mean"]) == pytest.approx(56.2) and float(r["std"]) == pytest.approx(0.08 ** 0.5)
    assert float(r["delta"]) == pytest.approx(3.9)  # 56.2 - 52.3, with its Welch interval (tests/test_analysis_stats.py)
    assert (float(r["ci_low"]), float(r["ci_high"])) == pytest.approx((2.1, 5.7), abs=0.05)
    assert (r["paper_value"], r["paper_note"], r["vs_paper"]) == ("", "not reported", "disagree")
    d = by[("0.95", "davis.j_mean")]
    assert (d["is_default"], d["paper_value"], d["paper_source"], d["vs_paper"], d["delta"]) == \
        ("true", "56.6", "S", "default", "")
    assert d["paper_setting"] == "the 400-epoch ablations' default setting (400 epochs)"
    assert by[("0.75", "davis.j_mean")]["vs_paper"] == "no paper direction"  # the direction is about J&F
    failed = by[("0.5", "davis.jf_mean")]
    assert (failed["n"], failed["mean"], failed["std"]) == ("0", "", "")
    base = by[("random init", "davis.jf_mean")]
    assert (base["role"], base["n"], float(base["mean"]), float(base["delta"])) == ("baseline", "1", 44.4,
                                                                                    pytest.approx(-7.9))


def test_table2_compares_each_study_with_the_paper(runs, tmp_path):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()  # Table 2d
    runs[("decoder", "smoke")] = [record("decoder", c, s, metrics=davis(v + s, v, v), trial=3 * i + s, budget="smoke")
                                  for i, (c, v) in enumerate([("cross-self", 50.0), ("cross", 45.0)]) for s in (0, 1)]
    runs[("patch_size", "cpu")] = [record("patch_size", "8", 0, metrics=davis(48.0, 47.0, 49.0)),
                                   record("patch_size", "16", 0, metrics=davis(45.0, 44.0, 46.0),
                                          params={"eval.protocol": "dino"})]  # Table 1
    runs[("mask_strategy", "cpu")] = [record("mask_strategy", "random", 0, metrics=davis(50.0, 49.0, 51.0))]
    runs[("encoder", "cpu")] = [record("encoder", "siamese", 0, status="FAILED", failure="x")]  # nothing finished
    out = report_command("table2", out=str(tmp_path / "t2"))
    md = (out / "report.md").read_text()
    headings = [ln for ln in md.splitlines() if ln.startswith("## (")]
    assert headings == ["## (a) Mask ratio [cpu, the paper's Table 2d]", "## (b) Patch size [cpu, the paper's Table 1]",
                        "## (c) Decoder [smoke]", "## (d) Mask placement [cpu]"]
    summary = md.split("## Against the paper")[1].split("\n## ")[0]
    assert ("| (a) Mask ratio | `cpu`, `paper` | 0.75 | DAVIS J&F | not reported | 56.2 ± 0.3 (n=2) | "
            "+3.9 [+2.1, +5.7] better | disagree |") in summary
    assert "| (a) Mask ratio | `cpu`, `paper` | 0.95 (default) | DAVIS J&F | 58.1 [S] | 52.3 ± 0.4 (n=2) | — | — |" in summary
    assert "| (b) Patch size | `cpu`, `dino`, `paper` | 16 (default) | DAVIS J&F | n/a: dino protocol | 45.0 (n=1) |" in summary
    # cross-self (50, 51) vs cross (45, 46): -5.0, Welch df = 2, t(0.975, 2) * sqrt(0.5 + 0.5)... resolved, as the paper
    assert ("| (c) Decoder | `smoke`, `paper` | cross | DAVIS J&F | 52.2 [S] | 45.5 ± 0.7 (n=2) | -5.0 [-8.0, -2.0] "
            "worse | agree |") in summary
    assert ("| (a) Mask ratio | `cpu`, `paper` | random init | DAVIS J&F | not reported | 44.4 (n=1) | "
            "-7.9 [-14.5, -1.3] worse |  |") in summary
    assert ("- **(c) Decoder** [smoke]. Does training help? The random-init encoder was not evaluated, so this report "
            "cannot say whether training helped at all. Finding: Over 2 seeds per cell, cross-self beats cross by 5.0 "
            "DAVIS J&F points") in md
    assert "| (b) Patch size | `cpu`, `dino`, `paper` | 8 | DAVIS J&F | 71.4 [P, 2000 ep.] | 48.0 (n=1) |" in summary
    tex = (out / "table.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 4 and tex.count(r"\bottomrule") == 4
    for prefix in ("decoder_smoke_", "mask_ratio_cpu_", "patch_size_cpu_", "mask_strategy_cpu_"):
        assert_png(out / f"{prefix}metric.png")
        assert f"]({prefix}metric.png)" in md
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert {r["study"] for r in rows} == {"mask_ratio", "decoder", "patch_size", "mask_strategy"}
    assert "## Provenance of this document" in md and "- report command: `study report table2 --out " in md


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
def test_analysis_never_imports_torch_or_mlflow_nor_picks_a_matplotlib_backend():
    import subprocess

    code = ("import sys, matplotlib, analysis.report, analysis.plots, analysis.tables, analysis.stats, analysis.paper, "
            "analysis.table2, analysis.findings; "
            "print('torch' in sys.modules, 'mlflow' in sys.modules, matplotlib.rcParams._get_backend_or_none())")
    env = {k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.split() == ["False", "False", "None"]  # None: the backend is still the user's to choose


def test_the_findings_are_printed_as_well_as_written(runs, tmp_path, capsys):
    runs[("mask_ratio", "cpu")] = mask_ratio_records()
    md = (report_command("mask_ratio", out=str(tmp_path / "rep")) / "report.md").read_text()
    printed = capsys.readouterr().out.splitlines()
    finding = next(line for line in md.splitlines() if line.startswith("**Finding.**"))
    assert printed[:2] == [next(line for line in md.splitlines() if line.startswith("**Does training help?**"))
                           .replace("**", ""), finding.replace("**", "")]
    assert printed[-1] == f"report: {tmp_path / 'rep' / 'report.md'}"
