"""Report building blocks: the study's plain-language findings and the Markdown-to-HTML steps."""

from __future__ import annotations

from pathlib import Path

from medgan.report import _block_html, _study_findings, _to_html


def test_study_findings_name_the_arms() -> None:
    summary = [
        {"arm": "real", "ratio": None, "fraction": 1.0, "seeds": 2},
        {"arm": "cgan", "ratio": 0.5, "fraction": 1.0, "seeds": 2, "verdict": "helped"},
        {"arm": "cgan", "ratio": 1.0, "fraction": 0.5, "seeds": 2, "verdict": "hurt"},
        {"arm": "cyclegan", "ratio": 0.5, "fraction": 1.0, "seeds": 0, "verdict": "skipped"},
    ]
    lines = _study_findings(summary)
    assert lines[0].endswith("for: cgan (ratio 0.5, real fraction 1).")
    assert lines[1] == "It hurt (CI below 0) for: cgan (ratio 1, real fraction 0.5)."
    assert lines[2].startswith("Skipped because") and lines[2].endswith(
        "cyclegan (ratio 0.5, real fraction 1)."
    )
    assert len(lines) == 3
    # "No arm improved" only where a verdict vs real-only data was computed
    assert _study_findings(summary[:1]) == [
        "Only the real-only arm ran: there is no other arm to compare it with."
    ]
    none_helped = _study_findings([summary[0], {**summary[2], "verdict": "no clear difference"}])
    assert none_helped == [
        "**No arm improved test AUC over real-only data with confidence on this dataset.**"
    ]


def test_block_html_kinds(tmp_path: Path) -> None:
    assert _block_html("# T <1>", tmp_path) == "<h1>T &lt;1&gt;</h1>"
    assert _block_html("## Data", tmp_path) == "<h2>Data</h2>"
    assert _block_html("*a caption*", tmp_path) == "<p><em>a caption</em></p>"
    assert _block_html("**FAILED: x** and **y**", tmp_path) == "<p><b>FAILED: x</b> and **y**</p>"
    assert _block_html("   ", tmp_path) is None
    missing = _block_html("![fig](figs/none.png)", tmp_path)
    assert missing is not None and 'alt="fig"' in missing and 'base64,"' in missing  # no file: empty image
    (tmp_path / "f.png").write_bytes(b"\x89PNG")
    assert "base64,iVBORw==" in (_block_html("![f](f.png)", tmp_path) or "")


def test_to_html_tables_and_code(tmp_path: Path) -> None:
    page = _to_html("| a | b |\n|---|---|\n| 1 | <2> |\ntext\n```\n# not a heading\n```", tmp_path, "t")
    assert (
        '<div class="table-wrap"><table><tr><th>a</th><th>b</th></tr>\n<tr><td>1</td><td>&lt;2&gt;</td></tr>\n'
        "</table></div>" in page
    )
    assert "<p>text</p>\n<pre>\n# not a heading\n</pre>" in page
    assert page.startswith("<!doctype html>") and "<title>t</title>" in page
