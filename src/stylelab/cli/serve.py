"""`stylelab serve [--port 8000] [--host 127.0.0.1] [--data DIR] [--open] [--token T]`: the web app.

Registered by cli.build_parser (`register`) and dispatched by cli.main (`run`). Needs `pip install 'stylelab[web]'`
(FastAPI, uvicorn, python-multipart). Loopback only by default; a non-loopback --host needs a token (one is made
and printed when --token is not given) and the page's URL carries it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
import sys
import threading
import webbrowser
from pathlib import Path

from ..config import ConfigError

__all__ = ["default_data_dir", "is_loopback", "register", "run"]


def default_data_dir() -> Path:
    """$STYLELAB_DATA, else the user data dir: $XDG_DATA_HOME/stylelab (~/.local/share/stylelab)."""
    if os.environ.get("STYLELAB_DATA"):
        return Path(os.environ["STYLELAB_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or (Path.home() / ".local" / "share")
    return Path(base) / "stylelab"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="a local web app: paint while you watch, steer, queue, gallery (needs stylelab[web])",
        description="Serve the stylelab web app: upload content and style images, edit every setting of "
        "`stylelab run`, watch the image being painted, cancel, edit and continue; results and their settings "
        "stay in --data across restarts.",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1); anything but loopback needs --token")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="folder of uploads, results and the job database (default: $STYLELAB_DATA, else "
                   "$XDG_DATA_HOME/stylelab or ~/.local/share/stylelab)")
    p.add_argument("--token", default=None, help="require this token on every request (made up when --host is "
                   "not loopback and none is given)")
    p.add_argument("--open", action="store_true", help="open the page in a browser")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..web.app import create_app
    except ImportError as exc:
        raise ConfigError(f"stylelab serve needs the web extra: pip install 'stylelab[web]' ({exc.name} is "
                          "missing)") from None
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {args.port}")
    token = args.token
    hosts: list[str] = []
    if not is_loopback(args.host):
        if token is None:
            token = secrets.token_urlsafe(18)
            print(f"stylelab: --host {args.host} is reachable from other machines: every request needs the "
                  f"token {token}", file=sys.stderr)
        hosts = [args.host]
        if args.host in ("0.0.0.0", "::"):  # any interface: the names this machine is reached by
            name = socket.gethostname()
            hosts = [name, socket.getfqdn()]
            try:
                hosts += socket.gethostbyname_ex(name)[2]
            except OSError:
                pass
    if token is not None and len(token) < 8:
        raise ConfigError("--token must be at least 8 characters")
    data = Path(args.data) if args.data else default_data_dir()
    if data.exists() and not data.is_dir():
        raise ConfigError(f"--data is a file, not a folder: {data}")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make the data folder {data}: {exc.strerror or exc}") from None
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # a clear message rather than uvicorn's log
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host.strip("[]"), args.port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                              "try another --port") from None
    app = create_app(data, token, hosts=hosts, port=args.port)
    shown = "localhost" if is_loopback(args.host) else (hosts[0] if hosts else args.host)
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"stylelab serve: {url}  (data in {data}; Ctrl-C stops)", file=sys.stderr)
    if args.open:
        threading.Timer(1.0, webbrowser.open, (url,)).start()
    uvicorn.run(app, host=args.host.strip("[]"), port=args.port, log_level="warning")
    return 0
