"""The command line's grammar: every command and flag, and the flags -> TrainConfig mapping.

Defaults are not written here: each flag's default is read from the one place that owns it
(TrainConfig, OutputPaths, the store root, the column dimension); --tolerance, left unset,
is the gate's own (GateConfig), so parsing never imports the model.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from trainer.backends.base import DEFAULT_COLUMN_DIM
from trainer.errors import UserError
from trainer.ml.config import DEFAULT_STORE_ROOT, OutputPaths, TrainConfig

DESCRIPTION = "`python -m trainer [COMMAND]`: the review-to-embeddings pipeline, step by step."
DEFAULTS = TrainConfig()

# Training flags with bounds, checked before any work: a value outside them would fail deep in
# the optimizer (an lr of 1e38 overflows Adam) or train nothing, so it is refused up front.
RANGES = {
    "lr": (lambda v: v > 0, lambda v: v <= 1, "above 0 and at most 1"),
    "temperature": (lambda v: v > 0, lambda v: v <= 100, "above 0 and at most 100"),
    "holdout": (lambda v: v > 0, lambda v: v < 1, "strictly between 0 and 1"),
    "thin_share": (lambda v: v >= 0, lambda v: v <= 1, "at least 0 and at most 1"),
    "id_dropout": (lambda v: v >= 0, lambda v: v < 1, "at least 0 and below 1"),
    "epochs": (lambda v: v >= 1, lambda v: True, "at least 1"),
    "batch_size": (lambda v: v >= 1, lambda v: True, "at least 1"),
    "negatives": (lambda v: v >= 1, lambda v: True, "at least 1"),
    "patience": (lambda v: v >= 1, lambda v: True, "at least 1"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=DESCRIPTION)
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
    who.add_argument("--likes", help="comma-separated video ids a visitor liked (no reviews)")
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="UUID",
        help="video ids never to return (already shown, disliked)",
    )

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
    pipe.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="tolerated relative drop vs the champion (default: the gate's)",
    )
    pipe.add_argument("--store-root", type=Path, default=DEFAULT_STORE_ROOT,
                      help="local artifact store (when SUPABASE_URL is not set)")  # fmt: skip
    _train_flags(pipe)

    back = sub.add_parser("rollback", help="make a stored version latest and republish it")
    back.add_argument("version", help="e.g. two_tower_202611281400")
    _target(back)
    back.add_argument("--store-root", type=Path, default=DEFAULT_STORE_ROOT)

    snap = sub.add_parser(
        "snapshot", help="copy production's app tables into a work database (pg_dump/restore)"
    )
    snap.add_argument(
        "--source", default="prod_readonly", help="profiles.yml target to read (read-only)"
    )
    _target(snap)

    migrate = sub.add_parser("migrate", help="create or update the app tables and functions")
    _target(migrate)
    migrate.add_argument(
        "--column-dim", type=int, default=DEFAULT_COLUMN_DIM, help="embedding column dimension"
    )

    report = sub.add_parser(
        "report", help="draw a run's HTML report again from model_runs and the marts"
    )
    report.add_argument("--version", default=None, help="a model_runs version (default: latest)")
    _target(report)
    report.add_argument(
        "--runs-target",
        default=None,
        help="where the run is recorded, if not --target (e.g. prod after `snapshot`)",
    )
    report.add_argument(
        "--out-dir",
        type=Path,
        default=OutputPaths().out_model.parent,
        help="folder for report_<version>.html (default: beside the model files)",
    )

    sql = sub.add_parser("sql", help="run a query on the target and print the result")
    _target(sql)
    sql.add_argument("query")
    sql.add_argument("--csv", action="store_true", help="print CSV rows without a header")
    return parser


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=None, help="profiles.yml target (default: duckdb)")


def _anonymize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoding",
        default="utf-8",
        help="the CSV's text encoding (any ASCII-compatible one, e.g. cp932); gzip and zstd "
        "files are recognised by their first bytes",
    )
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
        "--thin-share",
        type=float,
        default=DEFAULTS.thin_share,
        help="share of users per epoch who pool only three positives, as a new user would",
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
    for name, (low, high, rule) in RANGES.items():
        value = values.get(name)
        if value is not None and not (math.isfinite(value) and low(value) and high(value)):
            flag = "--" + name.replace("_", "-")
            raise UserError(f"{flag} {value!r} is out of range: it must be {rule}")
    if not values.get("history_pooling", True):
        values["user_ids"] = True  # a user tower needs something: the ID embedding alone
    return TrainConfig(**values)
