"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py wsgi:app`.

Sync workers, no `--preload` (each worker imports the app itself; nothing needs sharing). Web
workers never start the scheduler: it runs as its own process (`flask --app wsgi tumorboard
scheduler`, see README.md "Deployment"). Every value here can be changed without editing the
file: the variables below, or any gunicorn flag through `GUNICORN_CMD_ARGS`.
"""

import gc
import os

#: where to listen; behind a reverse proxy (TLS) keep it on the loopback or a private address
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
#: sync workers block on the database while they wait: 2 per core plus one is the usual start
workers = int(os.environ.get("GUNICORN_WORKERS", str(2 * (os.cpu_count() or 1) + 1)))
worker_class = "sync"
#: a request that runs longer than this is killed and its worker replaced (the transaction
#: rolls back with the lost connection)
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
#: recycle workers now and then (bounded memory growth), not all at once. Not often: a new worker
#: spends its first ~200 requests compiling templates and SQL (~3 s of CPU), which at 2,000 cost
#: ~1.5 ms per request (bench/README.md)
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "50000"))
max_requests_jitter = max_requests // 10
preload_app = False
#: gunicorn's own access log is off, as gunicorn's default: the TLS reverse proxy in front logs
#: every request, and PHI reads are in the audit trail. A second log line per request cost ~4 % of
#: a worker's CPU (py-spy, bench/README.md). GUNICORN_ACCESSLOG=- writes it to stdout.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
#: trust X-Forwarded-* from the local proxy only; the app's PROXY_FIX_X_FOR decides what it uses
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def post_worker_init(worker: object) -> None:
    """The app is loaded: move its long-lived objects (modules, models, templates, compiled SQL)
    out of the cyclic collector's reach, so its full collections stay short (tail latency)."""
    gc.freeze()
