"""docs/benchmarks.md as the benchmark writes it: one block per section output, replaced by that
section's run and by nothing else; quick runs leave the file alone unless told."""
import argparse
import sys
import types

import pytest

from mpirl.bench import SECTIONS, report
from mpirl.bench import __main__ as bench

MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "python": "3.11.7", "platform": "Linux"}
TABLE = "| ranks | steps/s |\n|---|---|\n| 1 | 12,345 |\n\nTarget: fast (met)."


def _render(name="dqn", table=TABLE, **kw):
    kw = {"date": "2026-12-06 12:00 UTC", "machine": MACHINE,
          "command": f"python -m mpirl.bench {name}", **kw}
    return report.render_block(report.block_for(name), table, **kw)


def _outside(text, name):
    """The text before the block's first marker and after its last one."""
    begin, end = report.markers(name)
    return text[:text.index(begin)], text[text.index(end) + len(end):]


def test_replacing_a_block_keeps_every_other_byte():
    text = report.new_document()
    text = report.replace_block(text, "ppo", _render("ppo"))   # a block not a placeholder
    new = report.replace_block(text, "dqn", _render("dqn"))
    assert _outside(new, "dqn") == _outside(text, "dqn")
    assert "12,345" in new.split(report.markers("dqn")[0])[1]
    again = report.replace_block(new, "dqn", _render("dqn", table="| x |\n|---|\n| 2 |"))
    assert _outside(again, "dqn") == _outside(text, "dqn")
    assert "12,345" not in again.split(report.markers("dqn")[0])[1].split("<!-- /bench")[0]


def test_a_missing_block_is_appended_and_a_doubled_one_refused():
    text = report.HEADER
    new = report.replace_block(text, "ppo", _render("ppo"))
    assert new.startswith(text.rstrip("\n")) and new.endswith(report.markers("ppo")[1] + "\n")
    with pytest.raises(ValueError):
        report.replace_block(new + "\n" + _render("ppo"), "ppo", _render("ppo"))
    with pytest.raises(ValueError):
        report.replace_block(text + report.markers("ppo")[0], "ppo", _render("ppo"))


def test_a_missing_file_is_created_with_every_block(tmp_path):
    path = tmp_path / "docs" / "benchmarks.md"
    report.update(str(path), "mdp", _render("mdp"))
    text = path.read_text()
    for block in report.BLOCKS:
        begin, end = report.markers(block.name)
        assert text.count(begin) == 1 and text.count(end) == 1
        inside = text[text.index(begin):text.index(end)]
        if block.name == "mdp":
            assert "Test CPU 9000" in inside
        else:
            assert f"Not yet run by this version; run `{block.command}`" in inside


def test_a_block_holds_title_date_machine_command_and_table():
    block = _render("multitask-dqn", command="python -m mpirl.bench multitask --dqn --seed 3")
    assert block.startswith("<!-- bench:multitask-dqn -->\n## [Multi-task DQN](multitask.md)")
    assert block.endswith("<!-- /bench:multitask-dqn -->")
    for part in ("2026-12-06 12:00 UTC", "Test CPU 9000, 2 cores", TABLE,
                 "`python -m mpirl.bench multitask --dqn --seed 3`"):
        assert part in block
    assert "quick" not in block
    assert "not results" in _render(quick=True)


def test_every_section_output_has_a_block():
    from mpirl.bench import multitask
    names = {b.name for b in report.BLOCKS}
    assert set(SECTIONS) <= names
    for dqn in (False, True):
        assert multitask.output_name(argparse.Namespace(dqn=dqn)) in names
    assert report.block_for("multitask-dqn").command == "python -m mpirl.bench multitask --dqn"


@pytest.fixture
def fake_section(monkeypatch, tmp_path):
    """Section "replay" replaced by a module that returns at once, run from tmp_path."""
    module = types.ModuleType("mpirl.bench.replay")
    module.run = lambda args: {"figure": 12345, "plots": []}
    module.table = lambda result: f"| figure |\n|---|\n| {result['figure']:,} |"
    monkeypatch.setitem(sys.modules, "mpirl.bench.replay", module)
    monkeypatch.setattr(bench, "machine", lambda: MACHINE)
    monkeypatch.chdir(tmp_path)
    return module


def test_quick_runs_leave_docs_alone(fake_section, tmp_path):
    docs = tmp_path / "docs" / "benchmarks.md"
    assert bench.main(["replay", "--quick", "--out", "out"]) == 0
    assert (tmp_path / "out" / "replay.json").exists() and not docs.exists()
    assert bench.main(["replay", "--out", "out", "--no-docs"]) == 0
    assert not docs.exists()


def test_a_full_run_rewrites_its_block(fake_section, tmp_path):
    docs = tmp_path / "docs" / "benchmarks.md"
    assert bench.main(["replay", "--out", "out"]) == 0
    text = docs.read_text()
    begin, end = report.markers("replay")
    inside = text[text.index(begin):text.index(end)]
    assert "Test CPU 9000, 2 cores" in inside and "| 12,345 |" in inside
    assert "`python -m mpirl.bench replay --out out`" in inside
    before, after = _outside(text, "replay")
    fake_section.run = lambda args: {"figure": 777, "plots": []}
    bench.main(["replay", "--out", "out"])
    text = docs.read_text()
    assert _outside(text, "replay") == (before, after) and "| 777 |" in text


def test_a_quick_run_writes_an_explicit_docs_file_with_its_plots(fake_section, tmp_path):
    plot = tmp_path / "out" / "replay_plot.png"
    plot.parent.mkdir()
    plot.write_bytes(b"\x89PNG fake")
    fake_section.run = lambda args: {"figure": 1, "plots": [str(plot)]}
    docs = tmp_path / "elsewhere" / "bench.md"
    assert bench.main(["replay", "--quick", "--out", "out", "--docs", str(docs)]) == 0
    text = docs.read_text()
    assert "A quick run" in text and "![replay_plot](benchmarks/replay_plot.png)" in text
    assert (docs.parent / "benchmarks" / "replay_plot.png").read_bytes() == b"\x89PNG fake"
    assert not (tmp_path / "docs").exists()
