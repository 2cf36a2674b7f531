"""What each `python -m trainer` command does: parsed arguments in, the step's job called, a
short human summary out. Imports are inside the handlers so `--help` and `synth` stay fast."""

from __future__ import annotations

import argparse
import sys

from trainer.cli.parser import config_from_args
from trainer.errors import UserError
from trainer.ml.config import OutputPaths


def _cmd_synth(args: argparse.Namespace) -> int:
    from trainer.ingest.synth import SynthConfig, write_synthetic_csv

    if args.reviews < 1:
        raise UserError("--reviews must be positive")
    counts = write_synthetic_csv(
        args.out,
        SynthConfig(reviews=args.reviews, seed=args.seed, shape=args.shape, dirt=args.dirt),
    )
    print(
        f"wrote {args.out}: {counts['lines']:,} lines "
        f"({counts['bad_lines']:,} malformed on purpose)"
    )
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from trainer.backends import connect
    from trainer.backends.profiles import load_target
    from trainer.backends.run_lock import run_lock
    from trainer.ingest.anonymize import key_from_env
    from trainer.ingest.load import load_reviews

    target = load_target(args.target)
    hmac_key = key_from_env() if args.anonymize else None
    with run_lock(target), connect(target) as warehouse:
        loaded = load_reviews(warehouse, args.path, hmac_key, args.encoding)
    print(
        f"loaded {args.path} into {target.name}: {loaded.reviews.num_rows:,} rows in raw.reviews, "
        f"{loaded.rejects.num_rows:,} unparseable lines in raw.load_rejects "
        f"(of {loaded.data_lines:,} data lines)"
    )
    for note in loaded.notes:
        print(f"note: {note}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from trainer.backends import connect
    from trainer.backends.profiles import load_target
    from trainer.backends.run_lock import run_lock
    from trainer.jobs.training import train_run
    from trainer.report import report_after_run

    cfg = config_from_args(args)
    outputs = OutputPaths(args.out_model, args.out_video_emb, args.out_user_emb)
    target = load_target(args.target)
    with run_lock(target), connect(target) as warehouse:
        summary = train_run(warehouse, cfg, outputs, publish=args.publish, progress=not args.quiet)
        report = report_after_run(warehouse, warehouse, outputs.out_model.parent, summary.version)
    print()
    print(
        f"model {summary.version}: {summary.n_users:,} users, {summary.n_videos:,} videos; "
        f"validation (full ranking, train items masked, "
        f"{int(summary.metrics['two_tower']['users']):,} users)"
    )
    print(summary.table())
    print()
    for path in [*summary.artifact_paths, *([report] if report else [])]:
        print(f"wrote {path}")
    if args.publish:
        print("published video_embeddings and user_embeddings")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from trainer.backends import connect
    from trainer.backends.profiles import load_target
    from trainer.jobs.text_tables import table

    with connect(load_target(args.target)) as warehouse:
        if args.user is not None:
            rows = warehouse.recommend(args.user, args.k, args.exclude)
            title = f"top {args.k} for user {args.user}"
        elif args.likes is not None:
            likes = [v.strip() for v in args.likes.split(",") if v.strip()]
            rows = warehouse.recommend_for_likes(likes, args.k, args.exclude)
            title = f"top {args.k} for a visitor who liked {len(likes)} videos"
        else:
            rows = warehouse.similar(_video_id(args.video), args.k, args.exclude)
            title = f"{args.k} videos similar to {args.video}"
    if not rows:
        raise UserError(f"nothing to recommend ({title}): are the embeddings published?")
    print(title)
    print(
        table(
            ["#", "score", "video_id", "product_url"],
            [[i, r.score, r.video_id, r.product_url] for i, r in enumerate(rows, 1)],
        )
    )
    return 0


def _video_id(text: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError as exc:
        raise UserError(f"--video takes a video id (uuid), got {text!r}") from exc


def _cmd_sql(args: argparse.Namespace) -> int:
    import polars as pl

    from trainer.backends import connect
    from trainer.backends.profiles import load_target

    with connect(load_target(args.target), read_only=True) as warehouse:
        try:
            frame = warehouse.read(args.query)
        except Exception as exc:  # the engine's own message is the useful part
            raise UserError(f"query failed: {str(exc).splitlines()[0]}") from exc
    if args.csv:
        print(frame.write_csv(include_header=False), end="")
    else:
        with pl.Config(
            tbl_rows=100, tbl_cols=20, fmt_str_lengths=80, tbl_hide_dataframe_shape=True
        ):
            print(frame)
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from trainer.jobs.pipeline import PipelineOptions, run_pipeline
    from trainer.release.gate import GateConfig

    options = PipelineOptions(
        csv=args.csv,
        target=args.target,
        publish_target=args.publish_target,
        anonymize=args.anonymize,
        encoding=args.encoding,
        force=args.force,
        reason=args.reason,
        store_root=args.store_root,
        outputs=OutputPaths(args.out_model, args.out_video_emb, args.out_user_emb),
        gate=GateConfig() if args.tolerance is None else GateConfig(tolerance=args.tolerance),
        progress=not args.quiet,
    )
    result = run_pipeline(options, config_from_args(args))
    print(result.summary_text)
    if result.exit_code:
        print(f"error: pipeline did not publish {result.version}", file=sys.stderr)
    return result.exit_code


def _cmd_rollback(args: argparse.Namespace) -> int:
    from trainer.jobs.rollback import rollback

    print(rollback(args.version, args.target, args.store_root))
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from trainer.backends.profiles import load_target
    from trainer.backends.run_lock import run_lock
    from trainer.jobs.snapshot import snapshot

    source, work = load_target(args.source), load_target(args.target)
    print(f"snapshot {source.name} -> {work.name}", flush=True)
    with run_lock(work):  # the restore replaces the work copy's tables
        result = snapshot(source, work)
    print(
        f"restored {len(result.tables)} tables into {work.name} "
        f"(PostgreSQL {result.source_version} -> {result.work_version}, {result.tools.version}; "
        f"dump {result.dump_bytes / 1e6:.1f} MB in {result.seconds['dump']:.1f} s, "
        f"restore {result.seconds['restore']:.1f} s)"
    )
    if result.missing:
        print(f"not in the source yet: {', '.join(result.missing)}")
    for message in result.skipped:
        print(f"warning: skipped on the work copy (not needed to train): {message}")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from trainer.backends import connect
    from trainer.backends.profiles import load_target
    from trainer.backends.run_lock import run_lock

    target = load_target(args.target)
    with run_lock(target), connect(target) as warehouse:
        warehouse.ensure_app_schema(args.column_dim)
    print(f"migrated {target.name}: app tables, functions and grants are in place")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from trainer.backends import connect
    from trainer.backends.profiles import load_target
    from trainer.report import write_report

    marts_target = load_target(args.target)
    runs_target = load_target(args.runs_target) if args.runs_target else marts_target
    with connect(marts_target) as marts:
        if runs_target.name == marts_target.name:
            path = write_report(marts, marts, args.out_dir, args.version)
        else:
            with connect(runs_target) as runs:
                path = write_report(marts, runs, args.out_dir, args.version)
    print(f"wrote {path}")
    return 0


COMMAND_HANDLERS = {
    "report": _cmd_report,
    "migrate": _cmd_migrate,
    "snapshot": _cmd_snapshot,
    "pipeline": _cmd_pipeline,
    "rollback": _cmd_rollback,
    "sql": _cmd_sql,
    "synth": _cmd_synth,
    "load": _cmd_load,
    "train": _cmd_train,
    "recommend": _cmd_recommend,
}
