"""`python -m trainer [COMMAND]`: synth, load, train (default), recommend, pipeline, rollback,
snapshot, migrate, sql.

Every command takes --target (a profiles.yml output; default: the profile's default, duckdb).
Problems the user can fix print one clear line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer.errors import UserError
from trainer.ml.config import OutputPaths, TrainConfig

DEFAULTS = TrainConfig()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a realistic synthetic review CSV")
    synth.add_argument("--out", type=Path, default=Path("data/reviews.csv"))
    synth.add_argument("--reviews", type=int, default=50_000, help="rows before dirt (10k to 10M)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--shape",
        choices=["longtail", "dense"],
        default="longtail",
        help="longtail: DMM-like; dense: heavy reviewers, small catalog",
    )
    synth.add_argument("--dirt", type=float, default=1.0, help="scale of scrape dirt; 0 = clean")

    load = sub.add_parser(
        "load", help="load a review CSV into raw.reviews (replaces the last load)"
    )
    load.add_argument("path", type=Path)
    _target(load)
    _anonymize(load)

    train = sub.add_parser("train", help="train, evaluate against baselines, write embeddings")
    _target(train)
    _train_flags(train)

    rec = sub.add_parser("recommend", help="top videos for a user, or videos similar to a video")
    _target(rec)
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="reviewer id")
    who.add_argument("--video", help="video id (uuid)")
    rec.add_argument("-k", type=int, default=10)

    pipe = sub.add_parser(
        "pipeline", help="load -> dbt build -> train -> gate -> publish (the weekly job)"
    )
    pipe.add_argument("csv", type=Path, help="the reviews CSV")
    _target(pipe)
    pipe.add_argument(
        "--publish-target",
        default=None,
        help="where embeddings go (default: --target); e.g. prod after `snapshot`",
    )
    _anonymize(pipe)
    pipe.add_argument("--force", action="store_true", help="publish even if the gate fails")
    pipe.add_argument("--reason", default="", help="why (required with --force; recorded)")
    pipe.add_argument("--tolerance", type=float, default=0.05,
                      help="tolerated relative drop against the champion")  # fmt: skip
    pipe.add_argument("--store-root", type=Path, default=Path("artifacts/models"),
                      help="local artifact store (when SUPABASE_URL is not set)")  # fmt: skip
    _train_flags(pipe)

    back = sub.add_parser("rollback", help="make a stored version latest and republish it")
    back.add_argument("version", help="e.g. two_tower_202611281400")
    _target(back)
    back.add_argument("--store-root", type=Path, default=Path("artifacts/models"))

    snap = sub.add_parser(
        "snapshot", help="copy production's app tables into a work database (pg_dump/restore)"
    )
    snap.add_argument(
        "--source", default="prod_readonly", help="profiles.yml target to read (read-only)"
    )
    _target(snap)

    migrate = sub.add_parser("migrate", help="create or update the app tables and functions")
    _target(migrate)
    migrate.add_argument("--column-dim", type=int, default=256, help="embedding column dimension")

    sql = sub.add_parser("sql", help="run a query on the target and print the result")
    _target(sql)
    sql.add_argument("query")
    sql.add_argument("--csv", action="store_true", help="print CSV rows without a header")
    return parser


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=None, help="profiles.yml target (default: duckdb)")


def _anonymize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--anonymize",
        action="store_true",
        help="replace reviewer ids by HMAC-SHA256 with the secret REVIEWER_ID_HMAC_KEY",
    )


def _train_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embedding-dim",
        type=int,
        default=DEFAULTS.embedding_dim,
        help="published vector size (at least 3): the learned coordinates + bias + completion",
    )
    p.add_argument(
        "--epochs", type=int, default=DEFAULTS.epochs, help="maximum; early stopping may end sooner"
    )
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--objective", choices=["softmax", "bce"], default=DEFAULTS.objective)
    p.add_argument("--temperature", type=float, default=DEFAULTS.temperature)
    p.add_argument("--no-logq", dest="logq_correction", action="store_false")
    p.add_argument(
        "--full-softmax-items",
        type=int,
        default=DEFAULTS.full_softmax_items,
        help="catalogs up to this many videos: every video is a negative",
    )
    p.add_argument(
        "--negatives",
        "--uniform-negatives",
        type=int,
        default=DEFAULTS.negatives,
        help="bigger catalogs: this many negatives sampled per step",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=DEFAULTS.holdout,
        help="share of a user's positives predicted from the rest, per epoch",
    )
    p.add_argument(
        "--no-refit",
        dest="refit",
        action="store_false",
        help="publish the selection model instead of refitting on all of train",
    )
    p.add_argument(
        "--no-item-bias",
        dest="item_bias",
        action="store_false",
        help="score by plain cosine, without the learned per-video bias",
    )
    p.add_argument("--star-weighting", action="store_true", help="weight positives by stars / 5")
    p.add_argument(
        "--no-history",
        dest="history_pooling",
        action="store_false",
        help="no pooled history in the user tower (implies --user-ids)",
    )
    p.add_argument(
        "--user-ids",
        action="store_true",
        help="add a learned per-user ID embedding to the user tower",
    )
    p.add_argument("--id-dropout", type=float, default=DEFAULTS.id_dropout,
                   help="share of rows trained without the user ID (cold start)")  # fmt: skip
    p.add_argument("--patience", type=int, default=DEFAULTS.patience)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--device", default=DEFAULTS.device, help="auto, cpu or cuda")
    p.add_argument("--out-model", type=Path, default=OutputPaths.out_model)
    p.add_argument("--out-video-emb", type=Path, default=OutputPaths.out_video_emb)
    p.add_argument("--out-user-emb", type=Path, default=OutputPaths.out_user_emb)
    p.add_argument(
        "--no-publish",
        dest="publish",
        action="store_false",
        help="write files only; leave the embedding tables as they are",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields}
    if values.get("embedding_dim", DEFAULTS.embedding_dim) < 3:
        raise UserError("--embedding-dim must be at least 3 (2 coordinates carry bias and norm)")
    if not values.get("history_pooling", True):
        values["user_ids"] = True  # a user tower needs something: the ID embedding alone
    return TrainConfig(**values)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]  # `python -m trainer --epochs 5` trains
    args = _parser().parse_args(argv)
    try:
        return COMMAND_HANDLERS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


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
    from trainer.ingest.anonymize import key_from_env
    from trainer.ingest.load import load_reviews

    target = load_target(args.target)
    hmac_key = key_from_env() if args.anonymize else None
    with connect(target) as warehouse:
        loaded = load_reviews(warehouse, args.path, hmac_key)
    print(
        f"loaded {args.path} into {target.name}: {loaded.reviews.num_rows:,} rows in raw.reviews, "
        f"{loaded.rejects.num_rows:,} unparseable lines in raw.load_rejects "
        f"(of {loaded.data_lines:,} data lines)"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from trainer.backends import connect
    from trainer.backends.profiles import load_target
    from trainer.jobs.training import train_run

    cfg = config_from_args(args)
    outputs = OutputPaths(args.out_model, args.out_video_emb, args.out_user_emb)
    with connect(load_target(args.target)) as warehouse:
        summary = train_run(warehouse, cfg, outputs, publish=args.publish, progress=not args.quiet)
    print()
    print(
        f"model {summary.version}: {summary.n_users:,} users, {summary.n_videos:,} videos; "
        f"validation (full ranking, train items masked, "
        f"{int(summary.metrics['two_tower']['users']):,} users)"
    )
    print(summary.table())
    print()
    for path in summary.artifact_paths:
        print(f"wrote {path}")
    if args.publish:
        print("published video_embeddings and user_embeddings")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from trainer.backends import connect
    from trainer.backends.profiles import load_target
    from trainer.jobs.report import table

    if args.k < 1:
        raise UserError("-k must be at least 1")
    with connect(load_target(args.target)) as warehouse:
        if args.user is not None:
            rows = warehouse.recommend(args.user, args.k)
            title = f"top {args.k} for user {args.user}"
        else:
            rows = warehouse.similar(_video_id(args.video), args.k)
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
        force=args.force,
        reason=args.reason,
        store_root=args.store_root,
        outputs=OutputPaths(args.out_model, args.out_video_emb, args.out_user_emb),
        gate=GateConfig(tolerance=args.tolerance),
        progress=not args.quiet,
    )
    result = run_pipeline(options, config_from_args(args))
    print(result.summary_text)
    if result.exit_code:
        print(f"error: pipeline did not publish {result.version}", file=sys.stderr)
    return result.exit_code


def _cmd_rollback(args: argparse.Namespace) -> int:
    from trainer.jobs.pipeline import rollback

    print(rollback(args.version, args.target, args.store_root))
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from trainer.backends.profiles import load_target
    from trainer.jobs.snapshot import snapshot

    source, work = load_target(args.source), load_target(args.target)
    print(f"snapshot {source.name} -> {work.name}", flush=True)
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

    target = load_target(args.target)
    with connect(target) as warehouse:
        warehouse.ensure_app_schema(args.column_dim)
    print(f"migrated {target.name}: app tables, functions and grants are in place")
    return 0


COMMAND_HANDLERS = {
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
