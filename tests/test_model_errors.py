"""A model that cannot be reached stops the campaign: a real server on 127.0.0.1, the real litellm client, `hive start`."""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import PLAYBOOKS


class Refusing(BaseHTTPRequestHandler):
    """Answers every request 401, as a provider does for a wrong API key."""

    seen: list[str] = []

    def log_message(self, *args):  # noqa: ANN002
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Refusing.seen.append(self.path)
        body = json.dumps({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                     "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def refusing_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Refusing.seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_a_401_stops_the_campaign_after_one_experiment_at_most(hive, tmp_path, refusing_server):
    result = hive("start", str(PLAYBOOKS / "quickstart.yaml"), "--headless", "--max-experiments", "7",
                  "-c", "strategist=llm", "-c", f"models.api_base={refusing_server}",
                  "-c", "models.api_key_env=HIVE_TEST_KEY",
                  env={"HIVE_MODEL": "openai/gpt-unreachable", "HIVE_TEST_KEY": "wrong"}, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: models.proposer: openai/gpt-unreachable cannot be reached: HTTP 401"), last
    assert "Traceback" not in result.stderr
    assert len(Refusing.seen) == 1  # asked once: a 401 is never retried
    db = sqlite3.connect(tmp_path / "workspaces" / "quickstart" / "hive.db")
    assert db.execute("select status from campaign").fetchall() == [("stopped",)]
    experiments = db.execute("select number, verdict from experiment order by number").fetchall()
    assert experiments == [(1, "baseline")]  # the baseline ran; no experiment is recorded as 'no_proposal'
    db.close()
