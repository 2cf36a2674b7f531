"""The run report: one self-contained HTML file per run, for analysts and reviewers.

data.py reads what a report shows (a model_runs row, the run history, the marts, a sample of
recommendations); plots.py draws it with matplotlib into embedded PNGs; page.py renders the page
and writes it atomically beside the run's artifacts.
"""

from trainer.report.page import report_after_run, report_path, write_report

__all__ = ["report_after_run", "report_path", "write_report"]
