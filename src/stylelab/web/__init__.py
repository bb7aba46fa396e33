"""`stylelab serve`: a local web app (FastAPI) that paints while you watch. Needs `pip install 'stylelab[web]'`.

    schema.py  the form: built from cli.py's `run` parser, validated by cli.config_from_args (one source of truth)
    runner.py  the job table (SQLite in the data folder), the queue and the one worker thread
    app.py     the HTTP API, server-sent events, the security checks; static/ the page (no build step, no CDN)
"""
