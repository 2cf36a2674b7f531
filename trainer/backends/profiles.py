"""Reads the same profiles.yml that dbt uses, so dbt and the trainer share one connection config.

dbt renders profiles with Jinja and an ``env_var`` function; we do the same with a sandboxed
Jinja environment, so secrets stay in environment variables and never in a second config file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2.sandbox import SandboxedEnvironment

from trainer.errors import UserError

PROFILE_NAME = "reviews_two_tower"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROFILES_DIR = REPO_ROOT


@dataclass(frozen=True)
class Target:
    """One rendered output of profiles.yml."""

    name: str
    kind: str  # "duckdb" or "postgres"
    schema: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def env_prefix(self) -> str:
        """The prefix of a Postgres target's variables: none for `postgres` (DATABASE_URL, PG*),
        NAME_ for any other (the `prod` target reads PROD_DATABASE_URL and PROD_PG*), so a run
        that reads one database and publishes to another never mixes their settings."""
        return "" if self.name == "postgres" else f"{self.name.upper()}_"

    @property
    def url_variable(self) -> str:
        """The DSN variable of a Postgres target (DATABASE_URL, PROD_DATABASE_URL...)."""
        return f"{self.env_prefix}DATABASE_URL"

    @property
    def duckdb_path(self) -> Path:
        return Path(self.settings["path"]).expanduser().resolve()


def _env_var(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise UserError(f"profiles.yml needs the environment variable {name}, which is not set")
    return value


def _render(value: Any, env: SandboxedEnvironment) -> Any:
    if isinstance(value, str):
        return env.from_string(value).render() if "{{" in value else value
    if isinstance(value, dict):
        return {key: _render(item, env) for key, item in value.items()}
    return value


def load_target(name: str | None = None, profiles_dir: Path | None = None) -> Target:
    """The rendered target `name` (default: the profile's default target)."""
    path = (profiles_dir or Path(os.environ.get("DBT_PROFILES_DIR", DEFAULT_PROFILES_DIR))) / (
        "profiles.yml"
    )
    if not path.exists():
        raise UserError(f"no profiles.yml at {path}")
    env = SandboxedEnvironment()
    env.globals["env_var"] = _env_var
    profile = yaml.safe_load(path.read_text())[PROFILE_NAME]
    target_name = name or _render(profile["target"], env)
    outputs = profile["outputs"]
    if target_name not in outputs:
        raise UserError(
            f"profiles.yml has no target {target_name!r}; known: {', '.join(sorted(outputs))}"
        )
    settings = _render(outputs[target_name], env)
    return Target(
        name=target_name,
        kind=settings["type"],
        schema=str(settings.get("schema", "main")),
        settings=settings,
    )
