"""One participant of a shared budget, as its own process: a ProfileClient batch, reported as one JSON line.

    python participant.py SPEC_JSON

SPEC_JSON: url, key, users, optionally ready_file and go_file (touch ready_file once set up, then begin when go_file
appears, so participants that started one by one begin together), and optional client settings (rate_limiter,
requests_per_minute, adaptive_pacing, max_concurrency). Without rate_limiter the client's default is used. Warnings
go to stderr. The JSON line has ok (user ids fetched), failed (kind per user), elapsed, pacing (throttled,
paced_down_to) and warnings (the log's warning lines).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path


def main() -> None:
    spec = json.loads(sys.argv[1])
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("amp_profile_magic")
    logger.addHandler(Keep(logging.WARNING))
    logger.setLevel(logging.WARNING)
    logger.propagate = False

    from amp_profile_magic import ProfileClient, ProfileQuery

    settings = {
        name: spec[name]
        for name in ("rate_limiter", "requests_per_minute", "adaptive_pacing", "max_concurrency")
        if name in spec
    }
    client = ProfileClient(
        endpoint=spec["url"], api_key=spec["key"], timeout=5.0, backoff_initial=0.05, backoff_max=0.5, **settings
    )
    queries = [ProfileQuery(user_id=user) for user in spec["users"]]
    client._client()  # connection pool ready before the common start
    if "ready_file" in spec:
        Path(spec["ready_file"]).touch()
        go, deadline = Path(spec["go_file"]), time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
    started = time.monotonic()
    batch = client.lookup_many(queries)
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "ok": [outcome.query.user_id for outcome in batch if outcome.ok],
                "failed": [outcome.error.kind for outcome in batch if outcome.error is not None],
                "elapsed": elapsed,
                "pacing": {"throttled": batch.pacing.throttled, "paced_down_to": batch.pacing.paced_down_to},
                "summary": batch.pacing.describe(),
                "warnings": records,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
