"""`make mutants` cannot rot silently: its table parses, every snippet still matches its file exactly once, and every
test it names still exists (a refactor that moves a snippet or renames a test fails here, in `make test`)."""

import pytest

from tests.mutants.run import Mutant, Outcome, load_table, problems, report

MUTANTS, TIMEOUT = load_table()


def test_the_table_parses_and_covers_the_core_modules():
    assert TIMEOUT > 0 and len(MUTANTS) >= 30
    assert {m.area for m in MUTANTS} >= {"masking", "loss", "decoder", "lr", "resume", "propagation", "davis", "jhmdb",
                                         "vip", "queue", "report"}


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_each_mutant_applies_to_the_current_source(mutant):
    assert problems(mutant) == []


def test_a_stale_snippet_or_test_is_reported(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\nx = 1\n")
    (tmp_path / "test_a.py").write_text("def test_a():\n    pass\n")
    stale = Mutant("m", "area", "a.py", "x = 1", "x = 2", ("test_a.py::test_a", "test_a.py::test_gone"), "bug")
    assert problems(stale, tmp_path) == ["m: the original snippet occurs 2 times in a.py (must be exactly once)",
                                         "m: test_a.py has no test test_gone"]


@pytest.mark.parametrize("statuses, code", [(["killed", "timeout"], 0), (["killed", "survived"], 1),
                                            (["killed", "error"], 1)])
def test_a_survivor_or_an_error_fails_the_run(statuses, code, capsys):
    outcomes = [Outcome(Mutant(f"m{i}", "area", "a.py", "x", "y", ("t",), "bug"), s, 1.0) for i, s in enumerate(statuses)]
    assert report(outcomes, 2.0) == code
    assert f"{len(statuses)} mutants: " in capsys.readouterr().out
