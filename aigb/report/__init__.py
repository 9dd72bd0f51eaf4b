"""Tables and plots from evaluation result files only (no torch): ``build_report``, ``aigb report``."""

from aigb.report.build import Report, build_report

__all__ = ["Report", "build_report"]
