"""The one Markdown table renderer."""
from mcuvision.markdown import kib, table


def test_a_pipe_in_a_cell_stays_in_its_column():
    lines = table(["a", "b"], [["80th percentile of |error|", 2]])
    assert lines == ["| a | b |", "|---|---|", "| 80th percentile of \\|error\\| | 2 |", ""]
    assert len(lines[2].replace("\\|", "").split("|")) == 4  # two cells between three pipes


def test_kib():
    assert kib(2048) == "2.00 KiB" and kib(None) == "n/a"
