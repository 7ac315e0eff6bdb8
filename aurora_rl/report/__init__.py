"""The report of the main job: results table, verdict, training curves, overlays, index.html."""

from aurora_rl.report.build_report import build_report
from aurora_rl.report.link_check import check_report_links
from aurora_rl.report.stage_result import StageResult

__all__ = ["StageResult", "build_report", "check_report_links"]
