"""Tables and plots from evaluation result files only (no torch): ``build_report``, ``aigb report``."""

def __getattr__(name: str):
    # Report and build_report import matplotlib: only when asked for, so the CLI starts fast.
    if name in ("Report", "build_report"):
        from aigb.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'aigb.report' has no attribute {name!r}")

__all__ = ["Report", "build_report"]
