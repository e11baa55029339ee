"""A tiny shop checkout behind the `new_checkout` flag: the canary path takes discount codes and writes the
columns of migration 2; the stable path is the code from before, which knows only the schema of migration 1.

    python app.py migrate --db orders.db                  # the expand migration, before the code that needs it
    python app.py serve --db orders.db --port 8000        # FLAGSVC_URL and FLAGSVC_SDK_KEY in the environment

HTTP (JSON): `POST /orders` {"user", "item", "quantity", "code"} places an order; `GET /orders/<id>?user=U` shows
one; `GET /healthz`. Each answer names the `path` that served it, canary or stable.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import schema
from flagsvc_client import FlagClient

FLAG = "new_checkout"
PRICES = {"book": 1500, "mug": 900, "poster": 1200}  # cents
DISCOUNTS = {"SPRING10": 10}  # percent


# -- stable: the code as it was before the flag; it names the columns of migration 1 and nothing else ---------

def old_checkout(db: sqlite3.Connection, user: str, item: str, quantity: int, code: str | None) -> int:
    total = PRICES[item] * quantity  # no discount codes yet: `code` is ignored
    cursor = db.execute("INSERT INTO orders (user_id, item, quantity, total_cents) VALUES (?, ?, ?, ?)",
                        (user, item, quantity, total))
    return int(cursor.lastrowid or 0)


def old_order(db: sqlite3.Connection, order_id: int) -> dict[str, Any] | None:
    row = db.execute("SELECT id, user_id, item, quantity, total_cents FROM orders WHERE id = ?",
                     (order_id,)).fetchone()  # never SELECT *: a column added later must not change this answer
    return None if row is None else dict(row)


# -- canary: discount codes, in the columns of migration 2 ------------------------------------------------------

def new_checkout(db: sqlite3.Connection, user: str, item: str, quantity: int, code: str | None) -> int:
    subtotal = PRICES[item] * quantity
    discount = subtotal * DISCOUNTS.get(code or "", 0) // 100
    # total_cents keeps its meaning (what the customer pays), so the stable path reads this row correctly
    cursor = db.execute(
        "INSERT INTO orders (user_id, item, quantity, total_cents, discount_code, discount_cents)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (user, item, quantity, subtotal - discount, code if discount else None, discount))
    return int(cursor.lastrowid or 0)


def new_order(db: sqlite3.Connection, order_id: int) -> dict[str, Any] | None:
    row = db.execute("SELECT id, user_id, item, quantity, total_cents, discount_code, discount_cents"
                     " FROM orders WHERE id = ?", (order_id,)).fetchone()
    return None if row is None else dict(row)


# -- HTTP --------------------------------------------------------------------------------------------------

class CheckoutApp:
    def __init__(self, db_path: str, client: FlagClient) -> None:
        self.db_path, self.client = db_path, client

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            status, body = self.route(environ)
        except (KeyError, ValueError, TypeError) as exc:
            status, body = "400 Bad Request", {"error": f"bad request: {exc!r}"}
        except Exception as exc:  # the path's failure, already recorded by track() as an error
            status, body = "500 Internal Server Error", {"error": repr(exc)}
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def route(self, environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        if path == "/healthz":
            return "200 OK", {"flags": self.client.status}
        if method == "POST" and path == "/orders":
            order = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            return self.place(str(order["user"]), order["item"], int(order["quantity"]), order.get("code"))
        if method == "GET" and path.startswith("/orders/"):
            query = dict(pair.split("=", 1) for pair in environ.get("QUERY_STRING", "").split("&") if "=" in pair)
            return self.show(query["user"], int(path.removeprefix("/orders/")))
        return "404 Not Found", {"error": "no such route"}

    def place(self, user: str, item: str, quantity: int, code: str | None) -> tuple[str, dict[str, Any]]:
        if item not in PRICES or quantity < 1:
            raise ValueError("unknown item or quantity below 1")
        db = schema.connect(self.db_path)
        try:
            # both arms are tracked: the judge compares the canary's errors and latency with stable's
            with self.client.track(FLAG, user) as canary, db:
                checkout = new_checkout if canary else old_checkout
                order_id = checkout(db, user, item, quantity, code)
        finally:
            db.close()
        return "201 Created", {"id": order_id, "path": "canary" if canary else "stable"}

    def show(self, user: str, order_id: int) -> tuple[str, dict[str, Any]]:
        db = schema.connect(self.db_path)
        try:
            with self.client.track(FLAG, user) as canary:
                order = (new_order if canary else old_order)(db, order_id)
        finally:
            db.close()
        if order is None:
            return "404 Not Found", {"error": "no such order"}
        return "200 OK", {**order, "path": "canary" if canary else "stable"}


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(db_path: str, port: int) -> None:
    db = schema.connect(db_path)
    found = schema.version(db)
    db.close()
    if found < schema.LATEST:  # expand first, then deploy the code that needs it
        sys.exit(f"the database is at migration {found}; run `python app.py migrate --db {db_path}` first")
    client = FlagClient(os.environ["FLAGSVC_URL"], sdk_key=os.environ["FLAGSVC_SDK_KEY"])
    try:
        client.wait_until_ready(timeout=10)  # until then every user gets the stable path
        server = make_server("127.0.0.1", port, CheckoutApp(db_path, client), handler_class=QuietHandler)
        # SIGTERM (docker stop, systemd) stops the server loop, so the `finally` below flushes the last outcomes.
        # Not by raising SystemExit in the handler: wsgiref's request handler catches every exception, so one
        # landing while a response is written would be swallowed and the server would go on serving.
        signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown).start())
        print(f"checkout app on http://127.0.0.1:{server.server_port} (flags: {client.status})", flush=True)
        server.serve_forever()
    finally:
        client.close(timeout=5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser("migrate", help="apply the migrations the database lacks")
    migrate.add_argument("--db", required=True)
    migrate.add_argument("--to", type=int, default=schema.LATEST)
    run = commands.add_parser("serve", help="serve the checkout over HTTP")
    run.add_argument("--db", required=True)
    run.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.command == "migrate":
        for line in schema.migrate(args.db, args.to) or ["nothing to do"]:
            print(line)
    else:
        serve(args.db, args.port)


if __name__ == "__main__":
    main()
