"""``aigb report``: the command-line face of ``aigb.report.build.build_report``.

Exit status 1 when rows hold errors (the leaderboard covers only the campaigns every strategy
completed), as for ``aigb compare``; evaluations that share no such campaign are refused."""

from __future__ import annotations

__all__ = ["register", "cmd_report"]


def register(subparsers) -> None:
    """Add the ``report`` command."""
    p = subparsers.add_parser(
        "report", help="report.html and PNG figures from evaluation results",
        description="Leaderboard (mean score with 95% CI, % of the oracle bound, CPA violations, budget used, paired "
                    "differences against a baseline) and figures (remaining budget over the day, planned vs realised "
                    "budget for planning strategies, delivery smoothness, exhaustion and spend oscillation, per-tick "
                    "spend and bid multiplier, parameter sweeps) from `aigb evaluate --out` directories alone. "
                    "report.html is one self-contained file that opens offline.")
    p.add_argument("results", nargs="+", metavar="RUN_DIR", help="evaluation output directories (they must pair up, as for compare)")
    p.add_argument("--out", required=True, help="directory for report.html, the PNG figures and leaderboard.json/.txt")
    p.add_argument("--force", action="store_true", help="write into an --out that another aigb command wrote, or over files there aigb did not write (refused otherwise)")
    p.add_argument("--baseline", default=None,
                   help="strategy spec for paired differences (default: the evaluation's --baseline, else its first strategy)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from aigb.report.build import build_report

    from aigb.eval.commands import exit_status

    report = build_report(args.results, args.out, baseline=args.baseline, force=args.force)
    for line in report.coverage:   # interrupted evaluations, campaigns covered and left out
        print(f"# {line}")
    print(report.leaderboard_text)
    for note in report.notes:
        print(f"not shown: {note}")
    print(f"wrote {report.html} and {len(report.figures)} figures")
    return exit_status(report.summary)
