"""Runs the dbt project against a profiles.yml target, as a subprocess of this interpreter.

A subprocess keeps dbt's global logging and adapter state out of the trainer, and it is exactly
what a person types (`dbt build --project-dir dbt_project --profiles-dir .`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from trainer.backends.profiles import REPO_ROOT, Target
from trainer.errors import UserError

PROJECT_DIR = REPO_ROOT / "dbt_project"


def dbt_command(target: Target, *args: str, variables: dict | None = None) -> list[str]:
    command = [
        sys.executable,
        "-c",
        "from dbt.cli.main import cli; cli()",
        *args,
        "--project-dir",
        str(PROJECT_DIR),
        "--profiles-dir",
        str(REPO_ROOT),
        "--target",
        target.name,
    ]
    if variables:
        command += ["--vars", json.dumps(variables)]
    return command


PG_VARIABLES = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
}


def dbt_env(target: Target) -> dict[str, str]:
    """The environment dbt renders profiles.yml from: the trainer's own, so both reach the same
    database. The target's DSN (DATABASE_URL, PROD_DATABASE_URL...), which the trainer prefers,
    is spelt out as the PG* (PROD_PG*...) variables its profiles.yml output reads."""
    env = dict(os.environ)
    if target.kind == "duckdb":
        env["DUCKDB_PATH"] = str(target.duckdb_path)
    url = env.get(target.url_variable, "").strip() if target.kind == "postgres" else ""
    if url:
        from psycopg.conninfo import conninfo_to_dict

        try:
            parts = conninfo_to_dict(url)
        except Exception:
            raise UserError(
                f"{target.url_variable} is not a valid Postgres connection string"
            ) from None
        env.update(
            {
                target.env_prefix + PG_VARIABLES[k]: str(v)
                for k, v in parts.items()
                if k in PG_VARIABLES
            }
        )
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    return env


def run_dbt(
    target: Target,
    *args: str,
    variables: dict | None = None,
    quiet: bool = False,
    log_path: Path | None = None,
) -> None:
    """Run `dbt ARGS` on target; raise UserError (with dbt's output tail) when it fails."""
    result = subprocess.run(
        dbt_command(target, *args, variables=variables),
        env=dbt_env(target),
        cwd=REPO_ROOT,
        capture_output=quiet,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = ""
        if quiet:
            tail = "\n" + "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            if log_path:
                log_path.write_text(result.stdout + result.stderr)
        raise UserError(f"dbt {' '.join(args)} failed on target {target.name}{tail}")
