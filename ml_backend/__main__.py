"""Run the ML backend: `loop-ml-backend --host 127.0.0.1 --port 9090` (settings as for `loop`)."""

from __future__ import annotations

import argparse
import sys


def main() -> None:
    import uvicorn

    from loop.services.context import Context
    from loop.services.settings import load_settings
    from loop.services.workspace import backend_login
    from ml_backend.app import Limits, create_app

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    settings = load_settings()
    # The login Label Studio must send: the settings' one, else the one kept in the workspace's
    # credentials.json (generated once); None only with LOOP_ML_BACKEND_AUTH=off.
    auth = backend_login(settings)
    if auth is None:
        print("ml-backend: no login required (LOOP_ML_BACKEND_AUTH=off): anyone who can reach this port can "
              "post webhooks and start training", file=sys.stderr)
    ctx = Context(settings)
    from threadpoolctl import threadpool_limits

    # One BLAS thread for the small /predict products: waking a second one cost 6-7 ms per request
    # on a busy 2-core box (docs/benchmarks.md, "ML backend").
    threadpool_limits(limits=1, user_api="blas")
    ctx.embedder.encode(["warm-up"])  # load the model once, before /health says UP
    limits = Limits(predict_tasks=settings.predict_max_tasks, predict_text=settings.predict_max_text)
    app = create_app(ctx.store, ctx.cache, ctx.embedder, auth=auth, limits=limits)
    uvicorn.run(app, host=args.host, port=args.port or settings.ml_backend_port, log_level="info")


if __name__ == "__main__":
    main()
