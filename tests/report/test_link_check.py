import shutil

from aurora_rl.report import check_report_links
from aurora_rl.report.link_check import page_links


def test_built_page_has_no_broken_links_and_links_every_png(built_report):
    assert check_report_links(built_report.index) == []
    links = set(page_links(built_report.index))
    pngs = {p.relative_to(built_report.out_dir).as_posix() for p in built_report.out_dir.rglob("*.png")}
    assert len(pngs) == 2 + 5 * 3  # two curve figures, five examples for three stages
    assert pngs <= links
    assert {"results.md", "results.json"} <= links


def test_planted_and_missing_links_are_reported(built_report, tmp_path):
    copy = tmp_path / "report"
    shutil.copytree(built_report.out_dir, copy)
    index = copy / "index.html"
    html = index.read_text().replace(
        "</body>", "<a href='#verdict'>in page</a><img src='curves/nope.png'><a href='https://example.org/x'>web</a>"
                   f"<img src='{copy / 'curves' / 'sft.png'}'></body>")
    index.write_text(html)
    victim = sorted((copy / "overlays" / "grpo").glob("*.png"))[0]
    victim.unlink()
    broken = check_report_links(index)
    assert sorted(broken) == sorted(["curves/nope.png", "https://example.org/x", str(copy / "curves" / "sft.png"),
                                     f"overlays/grpo/{victim.name}"])
