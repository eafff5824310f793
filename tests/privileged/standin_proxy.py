"""A stand-in for ``cloudseed proxy`` (same command line): answers every GET with
JSON naming the scope it was started for and the client's address.

It lets the data-plane tests prove *reachability* (the guest's packets reach
the right namespace's proxy) independently of the real proxy → agent → API
chain, which ``test_real_chain.py`` covers.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudseed.http.inherit import take


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--listen", action="append", required=True)
    parser.add_argument("--router-id", default="")
    parser.add_argument("--network-id", default="")
    parser.add_argument("--agent-socket", default="")
    args = parser.parse_args()
    host, _, port = args.listen[0].rpartition(":")  # IPv4 only: enough for reachability

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"router_id": args.router_id, "network_id": args.network_id,
                               "client": self.client_address[0], "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    handed = take("proxy")  # the data plane's supervisor holds the listener
    if not handed:
        ThreadingHTTPServer((host, int(port)), Handler).serve_forever()
        return 0
    server = ThreadingHTTPServer(handed[0].getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = handed[0]
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
