"""The ai-recommend Edge Function served by the project's Deno (`make edge` installs it into
.tools/) on a free loopback port, against a Supabase project URL (the stand-in of
fake_postgrest.py in tests and benchmarks), and a client that posts one request to it."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.fake_postgrest import ANON_KEY

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = ROOT / "supabase" / "functions" / "ai-recommend"
DENO = ROOT / ".tools" / "node_modules" / ".bin" / "deno"
# index.ts as the Edge runtime runs it, but on a port of our choosing (the runtime picks its own)
SERVE = """
import { handle } from "%(fn)s/handler.ts";
import { configFromEnv, supabaseStore } from "%(fn)s/store.ts";
const config = configFromEnv(Deno.env);
Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: ({ port }) => console.log(`port ${port}`) },
  (request) => handle(request, (req) => supabaseStore(req, config)));
"""


@contextmanager
def served_function(project_url: str, **settings: str) -> Iterator[str]:
    """Run the function with SUPABASE_URL = project_url (and `settings` as further secrets,
    e.g. RECOMMEND_LIKES_TABLE); yields its URL."""
    if not DENO.exists():
        raise AssertionError(f"no Deno at {DENO}: `make edge` installs it")
    with tempfile.TemporaryDirectory(prefix="ai-recommend-") as tmp:
        serve = Path(tmp) / "serve.ts"
        serve.write_text(SERVE % {"fn": FUNCTION.as_posix()})
        env = {
            **os.environ,
            "DENO_DIR": str(ROOT / ".tools" / "deno-cache"),
            "SUPABASE_URL": project_url,
            "SUPABASE_ANON_KEY": ANON_KEY,
            **settings,
        }
        command = [str(DENO), "run", "--quiet", "--frozen", "--config", str(FUNCTION / "deno.json"),
                   "--allow-net=127.0.0.1", "--allow-env", "--allow-read", str(serve)]  # fmt: skip
        deno = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        try:
            line = deno.stdout.readline()
            if not line.startswith("port "):
                raise AssertionError(f"deno did not start: {line!r}")
            yield f"http://127.0.0.1:{line.split()[1]}"
        finally:
            deno.terminate()
            deno.wait(timeout=10)


def call(url: str, body: dict, token: str = ANON_KEY) -> tuple[int, dict]:
    """POST `body` as the holder of `token`; (status, JSON body)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
