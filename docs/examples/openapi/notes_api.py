#!/usr/bin/env python3
"""The Notes API of docs/openapi.md: an in-memory REST API, standard library
only. Requires `X-Api-Key: demo-key`.  Usage: notes_api.py [PORT] (8090)."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

NOTES = {1: {"id": 1, "text": "Call Grace (grace@clients.example) about the renewal", "tags": ["crm"]}}


class Handler(BaseHTTPRequestHandler):
    def reply(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

    def route(self, method):
        if self.headers.get("X-Api-Key") != "demo-key":
            return self.reply(401, {"message": "bad API key"})
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if method == "GET" and parts == ["notes"]:
            tags = parse_qs(url.query).get("tag", [])
            return self.reply(200, [n for n in NOTES.values() if not tags or set(tags) & set(n["tags"])])
        if method == "POST" and parts == ["notes"]:
            note = {"id": max(NOTES, default=0) + 1, **self.body()}
            NOTES[note["id"]] = note
            return self.reply(201, note)
        if parts[0] == "notes" and len(parts) == 2 and parts[1].isdigit():
            note = NOTES.get(int(parts[1]))
            if note is None:
                return self.reply(404, {"message": "no such note"})
            if method == "DELETE":
                del NOTES[note["id"]]
                return self.reply(204)
            return self.reply(200, note)
        if method == "POST" and parts == ["share"]:
            return self.reply(202, {"sent_to": self.body().get("to")})
        return self.reply(404, {"message": "no such route"})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8090
    print(f"notes API on http://127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
