"""Run the demo: Synapse + synapse_email_gate on 127.0.0.1, mail caught locally.

Started by scripts/demo.sh. State (SQLite database, signing key, logs) lives in
.demo/ and survives restarts; delete the folder to start over.
"""

from __future__ import annotations

import html
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.ports import port_from  # noqa: E402
from tests.harness.smtp import Mail, SmtpCatcher  # noqa: E402
from tests.harness.synapse import GATE_PATH, SynapseServer  # noqa: E402

DEMO_DIR = ROOT / ".demo"
RULE = "─" * 72


def headers(mail: Mail) -> str:
    return "\n".join(f"{k}: {mail.message.get(k, '')}" for k in ("From", "To", "Subject", "Date"))


def print_mail(mail: Mail) -> None:
    to = ", ".join(mail.rcpt_tos)
    print(f"\n{RULE}\nMail to {to}\n{headers(mail)}\n\n{mail.text.strip()}\n{RULE}", flush=True)


def viewer(catcher: SmtpCatcher) -> type[BaseHTTPRequestHandler]:
    class MailPage(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            items = []
            for mail in reversed(catcher.messages):
                head = headers(mail)
                body = re.sub(r"(https?://[^\s<]+)", r'<a href="\1">\1</a>', html.escape(mail.text))
                items.append(f"<article><pre><b>{html.escape(head)}</b>\n\n{body}</pre></article>")
            page = (
                "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=5>"
                "<title>Demo mailbox</title><style>body{font-family:sans-serif;max-width:60em;"
                "margin:auto}article{border:1px solid #ccc;margin:1em 0;padding:0 1em}"
                "pre{white-space:pre-wrap}</style>"
                f"<h1>Demo mailbox</h1><p>{len(items)} mail(s), newest first.</p>"
                + ("".join(items) or "<p>No mail yet.</p>")
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return MailPage


def main() -> int:
    DEMO_DIR.mkdir(exist_ok=True)
    catcher = SmtpCatcher(port=port_from(2525), on_mail=print_mail).start()
    web = ThreadingHTTPServer(("127.0.0.1", port_from(8026)), viewer(catcher))
    threading.Thread(target=web.serve_forever, daemon=True).start()
    mail_url = f"http://127.0.0.1:{web.server_address[1]}/"

    module_config = {"smtp": catcher.config(), "sender": "Demo email gate <gate@localhost>"}
    server = SynapseServer(
        module_config,
        directory=DEMO_DIR,
        server_name="localhost",
        port=port_from(8008),
        extra={"bcrypt_rounds": 12},
        new_session=False,  # in our process group: Ctrl-C reaches it too
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print(f"Starting Synapse (log: {server.log_file}) ...", flush=True)
        server.start(timeout=120)
        print(
            f"\n  Request a registration token:  {server.url(GATE_PATH)}/\n"
            f"  Caught mail:                    {mail_url}  (and printed below)\n"
            f"  Homeserver for Matrix clients:  {server.base_url}  (server name: localhost)\n"
            f"  SMTP catcher:                   {catcher.host}:{catcher.port}\n"
            f"  Stop: Ctrl-C (stops Synapse PID {server.pid} and the mail catcher)\n",
            flush=True,
        )
        assert server.proc is not None
        code = server.proc.wait()
        print(f"Synapse exited with {code}:\n{server.tail(30)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        server.stop()
        web.shutdown()
        catcher.close()


if __name__ == "__main__":
    sys.exit(main())
