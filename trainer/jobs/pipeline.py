"""`python -m trainer pipeline CSV`: the weekly job, the same for CI and for people.

    load -> dbt build -> train -> evaluate (+ champion) -> gate -> publish (artifact, embeddings)

With --publish-target (the snapshot flow), everything up to the gate runs on --target, a work
copy restored from production by `python -m trainer snapshot`; production only receives the
publish (its missing videos, the vectors, reviewed and popular videos) and the model_runs row.
With --anonymize, reviewer ids are keyed hashes from the load on (trainer/ingest/anonymize.py).

Order of publishing, so a failure at any point leaves a consistent state:
  1. the versioned artifact is stored (a failed upload publishes nothing);
  2. the embeddings replace the old ones in one transaction (readers see old or new);
  3. `latest` is moved in the store.
If the gate fails (and --force is not given), nothing is published: `latest` and the embedding
tables stay as they were. Every run, passed or not, is a row in model_runs, and the summary goes
to stdout, to $GITHUB_STEP_SUMMARY when set, and to the Slack webhook when SLACK_WEBHOOK_URL is.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from trainer.backends import ServingTables, Warehouse, connect
from trainer.backends.profiles import Target, load_target
from trainer.backends.run_lock import run_lock
from trainer.errors import UserError
from trainer.ingest.anonymize import key_from_env
from trainer.ingest.load import load_reviews
from trainer.jobs.notify import notify
from trainer.jobs.text_tables import markdown_table, summary_text
from trainer.jobs.training import (
    Trained,
    read_serving_tables,
    run_record,
    train_and_evaluate,
    unique_version,
    write_embeddings,
    write_latest,
    write_versioned,
)
from trainer.ml.config import DEFAULT_STORE_ROOT, OutputPaths, TrainConfig
from trainer.ml.evaluate import evaluate
from trainer.release.artifact import load_artifact
from trainer.release.gate import GateConfig, Verdict, champion_scorer, judge
from trainer.release.storage import (
    LATEST_NAME,
    ArtifactStore,
    sha256_file,
    store_from_env,
    versioned_name,
)
from trainer.report import report_after_run
from trainer.transform.dbt import run_dbt


@dataclass
class PipelineOptions:
    csv: Path
    target: str | None = None
    publish_target: str | None = None  # defaults to target
    anonymize: bool = False  # reviewer ids -> HMAC(REVIEWER_ID_HMAC_KEY, id) at load
    encoding: str = "utf-8"  # of the CSV (trainer/ingest/load.py)
    force: bool = False
    reason: str = ""
    store_root: Path = DEFAULT_STORE_ROOT
    outputs: OutputPaths = field(default_factory=OutputPaths)
    gate: GateConfig = field(default_factory=GateConfig)
    progress: bool = True


@dataclass
class PipelineResult:
    version: str
    verdict: Verdict
    published: bool
    stages: dict[str, float]
    summary_text: str
    exit_code: int


@dataclass
class Outcome:
    """What one run did: reported to model_runs, stdout, the job summary and the webhook."""

    trained: Trained
    verdict: Verdict
    published: bool
    error: str | None
    stages: dict[str, float]
    had_champion: bool
    artifact_sha256: str  # of the versioned model file; rollback checks a download against it


@contextmanager
def stage(stages: dict[str, float], name: str, progress: bool) -> Iterator[None]:
    if progress:
        print(f"== {name}", flush=True)
    started = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = round(time.perf_counter() - started, 3)


def run_pipeline(options: PipelineOptions, cfg: TrainConfig) -> PipelineResult:
    """The whole run under the run lock of its target (and of a separate publish target), held
    from the load to the run record (trainer/backends/run_lock.py)."""
    target = load_target(options.target)
    publish_target = load_target(options.publish_target) if options.publish_target else target
    with ExitStack() as locks:
        locks.enter_context(run_lock(target))
        if publish_target.name != target.name:
            locks.enter_context(run_lock(publish_target))
        return _run_locked(options, cfg, target, publish_target)


def _run_locked(
    options: PipelineOptions, cfg: TrainConfig, target: Target, publish_target: Target
) -> PipelineResult:
    if options.force and not options.reason.strip():
        raise UserError("--force needs --reason: the override is recorded with the run")
    separate = publish_target.name != target.name
    if separate and publish_target.kind != "postgres":
        raise UserError(
            f"--publish-target {publish_target.name} is {publish_target.kind}: a separate "
            "publish target must be Postgres (DuckDB serves from the marts it trained on)"
        )
    hmac_key = key_from_env() if options.anonymize else None
    if publish_target.kind == "postgres":  # before any work: the pipeline never migrates
        with connect(publish_target) as production:
            require_published_tables(production, publish_target.name)
    stages: dict[str, float] = {}
    with stage(stages, "load", options.progress), connect(target) as warehouse:
        loaded = load_reviews(warehouse, options.csv, hmac_key, options.encoding)
    for note in loaded.notes:
        print(f"note: {note}", flush=True)
    with stage(stages, "dbt build", options.progress):
        run_dbt(target, "build", quiet=True)
    with connect(publish_target) as where_recorded:  # model_runs lives where runs are recorded
        version = unique_version(where_recorded)
    with connect(target) as warehouse, stage(stages, "train + evaluate", options.progress):
        trained = train_and_evaluate(warehouse, cfg, options.progress, version)
        serving = read_serving_tables(warehouse) if separate else None
    with store_from_env(options.store_root) as store:
        with stage(stages, "champion", options.progress):
            try:
                champion = evaluate_champion(store, trained, cfg)
                verdict = judge(
                    trained.evaluations["two_tower"],
                    trained.evaluations["popularity"],
                    champion,
                    options.gate,
                )
            except Exception as exc:  # no champion, no verdict: publish nothing unless forced
                champion = None
                verdict = Verdict(False, f"the champion could not be evaluated: {exc}")
        digest = sha256_file(write_versioned(trained.artifact, options.outputs))
        go = verdict.passed or options.force
        with connect(publish_target) as warehouse:
            published, error = False, None
            if go:
                # Recorded before anything is committed: a run killed during the publish
                # leaves a row that says so (status "publishing"), never a live model with none.
                pending = {"status": "publishing", "artifact_sha256": digest}
                warehouse.record_run(
                    run_record(trained, publish_target.name, finished_at=None, notes=pending)
                )
                with stage(stages, "publish", options.progress):
                    try:
                        published, error = publish(store, warehouse, trained, options, serving)
                    except Exception as exc:  # recorded and reported below, then exit 1
                        error = f"publish failed, nothing was published: {exc}"
            if published:  # the local "latest" files follow what is live, and only that
                try:
                    write_latest(trained.artifact, options.outputs)
                except Exception as exc:  # live all the same: the record must say so, not hang
                    unwritten = f"embeddings published but the local latest files were not: {exc}"
                    error = error or unwritten
            outcome = Outcome(
                trained, verdict, published, error, stages, champion is not None, digest
            )
            record_and_report(warehouse, outcome, options, publish_target.name)
            with connect(target) if separate else nullcontext(warehouse) as marts:
                folder = options.outputs.out_model.parent  # beside the model files
                if report := report_after_run(marts, warehouse, folder, version):
                    print(f"wrote {report}")
    text = summary_text(outcome, options)
    exit_code = 0 if published and error is None else 1
    return PipelineResult(trained.artifact.version, verdict, published, stages, text, exit_code)


def evaluate_champion(store: ArtifactStore, trained: Trained, cfg: TrainConfig):
    """The current latest, scored on the new split's users (None on the first run)."""
    if not store.exists(LATEST_NAME):
        return None
    with tempfile.TemporaryDirectory(prefix="two-tower-champion-") as tmp:
        artifact = load_artifact(store.get(LATEST_NAME, Path(tmp) / LATEST_NAME))
    users = trained.evaluations["two_tower"].users
    return evaluate(champion_scorer(artifact, trained.data), trained.data, cfg.ks, users)


def require_published_tables(warehouse: Warehouse, target: str) -> None:
    """A Postgres publish target (the work database itself, or production) must already have
    the app tables: migrations are `python -m trainer migrate`'s alone, never a side effect of
    a run."""
    missing = [
        t
        for t in ("videos", "video_embeddings", "model_runs")
        if not warehouse.table_exists(f"public.{t}")
    ]
    if missing:
        raise UserError(
            f"the publish target {target} has no {', '.join(missing)}: run "
            f"`python -m trainer migrate --target {target}` there once"
        )


def publish(
    store: ArtifactStore,
    warehouse: Warehouse,
    trained: Trained,
    options: PipelineOptions,
    serving: ServingTables | None = None,
) -> tuple[bool, str | None]:
    """(embeddings published?, error after they were). See the module doc for the order."""
    version = trained.artifact.version
    model_file = options.outputs.out_model.with_name(versioned_name(version))
    store.put_version(model_file, version)  # 1. raises: nothing published
    write_embeddings(warehouse, trained.artifact, serving)  # 2. one transaction
    try:
        store.move_latest(model_file, version)  # 3.
    except Exception as exc:  # embeddings are live; say exactly what is not
        return True, f"embeddings published but {LATEST_NAME} was not moved: {exc}"
    return True, None


def record_and_report(
    warehouse: Warehouse, outcome: Outcome, options: PipelineOptions, target: str
) -> None:
    trained, verdict, published, error, stages = (
        outcome.trained, outcome.verdict, outcome.published, outcome.error, outcome.stages
    )  # fmt: skip
    forced = options.force and not verdict.passed
    status = "rejected" if not (verdict.passed or options.force) else "failed"
    notes = {
        "status": "published" if published and not error else status,
        "artifact_sha256": outcome.artifact_sha256,
        "stages_seconds": stages,
        "timings": trained.timings,
        "epochs": trained.epochs,
        "best_epoch": trained.artifact.metrics["best_epoch"],
        "gate": verdict.checks,
        "had_champion": outcome.had_champion,
        "forced": forced,
        "force_reason": options.reason if options.force else None,
        "error": error,
        "source_csv": str(options.csv),
        "trained_on": options.target,
        "anonymized": options.anonymize,
    }
    warehouse.record_run(
        run_record(
            trained,
            target,
            gate_passed=verdict.passed,
            gate_reason=verdict.reason,
            published=published,
            notes=notes,
        )  # fmt: skip
    )
    m = trained.evaluations["two_tower"].metrics
    notify(
        {
            "status": "published" if published and not error else "failed",
            "model_version": trained.artifact.version,
            "target": target,
            "published": published,
            "gate_reason": error or verdict.reason,
            "forced": forced,
            "force_reason": options.reason,
            "duration_s": sum(stages.values()),
            "metrics": {k: m[k] for k in ("recall@10", "ndcg@10", "map@10", "coverage@10")},
        }
    )
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as out:
            out.write(f"## Two-tower {trained.artifact.version}\n\n")
            out.write(
                f"**Gate:** {'passed' if verdict.passed else 'failed'} — {verdict.reason}\n\n"
            )
            out.write(
                f"**Published:** {'yes' if published else 'no'}{' (forced)' if forced else ''}\n\n"
            )
            out.write(markdown_table(trained.evaluations) + "\n")
