"""The report page: ReportData and its figures rendered by jinja2 (report.html.j2, autoescaped:
URLs and ids from a scrape are text, never markup) into one HTML file with its images inside.

The file goes beside the run's artifacts as `report_<version>.html`, written atomically, so a
half-written report never stands under that name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2

from trainer.backends import Warehouse
from trainer.files import atomic_path
from trainer.report import plots
from trainer.report.data import ReportData, collect

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def report_path(folder: Path, version: str) -> Path:
    return folder / f"report_{version}.html"


def render(data: ReportData) -> str:
    return _TEMPLATES.get_template("report.html.j2").render(
        data=data, run=data.run, figures=plots.all_figures(data), models=plots.MODELS
    )


def write_report(
    marts: Warehouse, runs: Warehouse, folder: Path, version: str | None = None
) -> Path:
    """Collect, draw and write one run's report into `folder`; returns its path."""
    data = collect(marts, runs, version)
    dest = report_path(folder, data.run["model_version"])
    html = render(data)
    with atomic_path(dest) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return dest


def report_after_run(marts: Warehouse, runs: Warehouse, folder: Path, version: str) -> Path | None:
    """A finished run's report, or None and a warning: drawing a report never changes what the
    run did or its exit code (`python -m trainer report` draws it again)."""
    try:
        path = write_report(marts, runs, folder, version)
    except Exception as exc:
        print(f"warning: no report for {version}: {exc}", file=sys.stderr)
        return None
    return path
