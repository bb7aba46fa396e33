"""`stylelab serve`: a local web app (FastAPI) that paints while you watch. Needs `pip install 'stylelab[web]'`.

    app.py       create_app: the FastAPI app of a data folder (middleware, error answers, the routes)
    routes.py    the HTTP API, by what it serves (page, uploads, jobs, reports); models.py its JSON bodies
    security.py  the Host and token checks, the body limit;  errors.py  the one-line JSON errors
    schema.py    the form: built from the CLI's `run` parser, validated by cli.config_from_args (one source of truth)
    runner.py    the jobs: validation, the queue, cancel / continue / restart, the live events
    worker.py    the one worker thread: runs a job, its step events, previews and result
    uploads.py   uploaded images by content hash;  reports.py  explain and compare reports of results
    db.py        the SQLite tables (versioned migrations through stylelab.jobs.store.open_versioned)
    static/      the page (no build step, no CDN)
"""

__all__ = []
