"""Run the ML backend: `loop-ml-backend --host 127.0.0.1 --port 9090` (settings as for `loop`)."""

from __future__ import annotations

import argparse


def main() -> None:
    import uvicorn

    from loop.services.context import Context
    from loop.services.settings import load_settings
    from ml_backend.app import create_app

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    settings = load_settings()
    ctx = Context(settings)
    from threadpoolctl import threadpool_limits

    # One BLAS thread for the small /predict products: waking a second one cost 6-7 ms per request
    # on a busy 2-core box (docs/benchmarks.md, "ML backend").
    threadpool_limits(limits=1, user_api="blas")
    ctx.embedder.encode(["warm-up"])  # load the model once, before /health says UP
    app = create_app(ctx.store, ctx.cache, ctx.embedder, auth=settings.backend_auth)
    uvicorn.run(app, host=args.host, port=args.port or settings.ml_backend_port, log_level="info")


if __name__ == "__main__":
    main()
