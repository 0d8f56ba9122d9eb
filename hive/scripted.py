"""A scripted OpenAI-compatible model on 127.0.0.1: replays a JSON script per role, so campaigns run without an API.

A script is `{"proposer": [...], "coder": [...], "critic": [...]}`. Each entry is a reply string, or an object:
`{"content": "...", "delay": 2.0}` (answer slowly), `{"status": 429}` (fail with that HTTP status; `"error": "text"`
gives the error's message), and any
entry may carry `"when": "text"`: it is only chosen for a request whose messages contain that text, and such an
entry is preferred over entries without `when`; and `"turn": N`: only chosen for the N-th model turn of a
conversation (a request with N - 1 assistant messages), so a multi-turn agent's script does not depend on the
order in which concurrent conversations ask.
Entries are used in order, cycling; the role comes from the `X-Hive-Role` header, else the request's model when
it names a role of the script (an agent CLI given the model `openai/coder`), else a `ROLE: name` first line.
Select it with `HIVE_MODEL=scripted:<name-or-path>`; run it alone with `python -m hive.scripted FILE --port N`.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hive.errors import BadInput

SCRIPTS = Path(__file__).parent / "scripted"
ROLE_LINE = re.compile(r"^\s*ROLE:\s*([A-Za-z_]+)")


def script_path(spec: str) -> Path:
    """The script file a `scripted:` spec names: a path, or a name under hive/scripted/."""
    path = Path(spec).expanduser()
    if path.suffix != ".json" and "/" not in spec:
        path = SCRIPTS / f"{spec}.json"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SCRIPTS.glob("*.json")))
        raise BadInput(f"scripted model: script {spec!r} not found (shipped: {shipped}, or give a .json path)")
    return path.resolve()


def _load(path: Path) -> dict[str, list[Any]]:
    try:
        script = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"scripted model: {path} is not valid JSON: {exc}") from None
    if not isinstance(script, dict) or not all(isinstance(v, list) for v in script.values()):
        raise BadInput(f"scripted model: {path} must map each role to a list of replies")
    return script


class ScriptedModel:
    """The replay state of one script: a cursor per role and a log of every request received."""

    def __init__(self, script: dict[str, list[Any]]):
        self.script = script
        self.cursor: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next_entry(self, role: str, text: str, turn: int = 1) -> dict[str, Any] | None:
        """The role's next entry whose `when` occurs in the request text, else its next entry without `when`.

        An entry with a `turn` is only chosen for that turn of a conversation, and before one without a turn."""
        entries = [e if isinstance(e, dict) else {"content": e} for e in self.script.get(role) or []]
        with self.lock:
            start = self.cursor.get(role, 0)
            order = [(start + k) % len(entries) for k in range(len(entries))]
            for wanted in (lambda e: e.get("when") is not None and e["when"] in text, lambda e: e.get("when") is None):
                for i in [i for i in order if entries[i].get("turn") == turn] + \
                         [i for i in order if entries[i].get("turn") is None]:
                    if wanted(entries[i]):
                        self.cursor[role] = i + 1
                        return entries[i]
        return None


def _role(headers: Any, messages: list[dict[str, Any]], model: str = "", roles: Any = ()) -> str:
    if headers.get("X-Hive-Role"):
        return headers["X-Hive-Role"]
    if model.rsplit("/", 1)[-1] in roles:  # an agent CLI told the model "coder" (it sends no Hive header)
        return model.rsplit("/", 1)[-1]
    for message in messages:
        found = ROLE_LINE.match(str(message.get("content") or ""))
        if found:
            return found.group(1)
    return "proposer"


def _handler(model: ScriptedModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # the request log is kept in memory, not on stderr
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client timed out and left; nothing to answer
                pass

        def do_POST(self) -> None:  # noqa: N802
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            messages = request.get("messages") or []
            role = _role(self.headers, messages, str(request.get("model") or ""), model.script)
            text = "\n".join(str(m.get("content") or "") for m in messages)
            model.requests.append({"role": role, "model": request.get("model"), "messages": messages, "text": text})
            turn = 1 + sum(1 for m in messages if m.get("role") == "assistant")
            entry = model.next_entry(role, text, turn)
            if entry is None:
                self._send(400, {"error": {"message": f"script has no reply for role {role!r}", "type": "invalid_request_error"}})
                return
            time.sleep(float(entry.get("delay", 0)))
            if entry.get("status", 200) != 200:
                message = entry.get("error") or f"scripted status {entry['status']}"
                self._send(int(entry["status"]), {"error": {"message": message, "type": "scripted"}})
                return
            content = str(entry.get("content", ""))
            usage = {"prompt_tokens": max(1, len(text) // 4), "completion_tokens": max(1, len(content) // 4)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": request.get("model") or "scripted",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": usage,
            })

    return Handler


class ScriptedServer:
    """A scripted model served over HTTP on 127.0.0.1 from a daemon thread."""

    def __init__(self, path: Path, port: int = 0):
        self.path = path
        self.model = ScriptedModel(_load(path))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.model))
        self.httpd.daemon_threads = True
        self.api_base = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="hive-scripted", daemon=True)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received, in order: role, model, messages and their joined text."""
        return self.model.requests

    def start(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_servers: dict[Path, ScriptedServer] = {}
_servers_lock = threading.Lock()


def ensure_server(spec: str) -> ScriptedServer:
    """The running server for a script (started on first use, once per process and script)."""
    path = script_path(spec)
    with _servers_lock:
        if path not in _servers:
            _servers[path] = ScriptedServer(path).start()
        return _servers[path]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m hive.scripted", description=__doc__.splitlines()[0])
    parser.add_argument("script", help="a script .json path or the name of a shipped script")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args()
    try:
        server = ScriptedServer(script_path(args.script), args.port)
    except BadInput as exc:
        parser.error(str(exc))
    print(f"scripted model {server.path} at {server.api_base}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
