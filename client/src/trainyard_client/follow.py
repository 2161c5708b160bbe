"""Following a job's events over `ws/jobs/<id>/`: token in the handshake's Authorization header,
replay with `{"after": last}` on (re)connect and on any gap, each sequence number yielded once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin
from websockets.sync.client import connect

TERMINAL = ("succeeded", "failed", "cancelled")
FINAL_CLOSE_CODES = {4401: "the token was refused (run `trainyard login`)", 4404: "no such job"}


class SocketClosed(Exception):
    pass


def _is_final(event: dict) -> bool:
    return event.get("kind") == "status" and event.get("status") in TERMINAL


def follow_events(ws_url: str, token: str, origin: str, *, after: int = 0, reconnect_delay: float = 1.0,
                  max_reconnects: int = 30, recv_timeout: float = 30.0) -> Iterator[dict]:
    last = after
    drops = 0
    while True:
        try:
            with connect(ws_url, additional_headers={"Authorization": f"Token {token}"}, origin=Origin(origin),
                         open_timeout=15, max_size=2**24) as ws:
                ws.send(json.dumps({"after": last}))
                while True:
                    try:
                        raw = ws.recv(timeout=recv_timeout)
                    except TimeoutError:
                        ws.send(json.dumps({"after": last}))  # quiet for long: make sure nothing was missed
                        continue
                    drops = 0
                    message = json.loads(raw)
                    if message.get("type") != "events":
                        continue
                    gap = False
                    for event in sorted(message.get("events", []), key=lambda e: e.get("seq", 0)):
                        seq = event.get("seq", 0)
                        if seq <= last:
                            continue  # already yielded (a replay overlaps the live stream)
                        if seq != last + 1:
                            gap = True  # a dropped frame: ask for the rest in order
                            break
                        last = seq
                        yield event
                        if _is_final(event):
                            return
                    if gap or (message.get("replay") and len(message.get("events", [])) >= 5000):
                        ws.send(json.dumps({"after": last}))
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code in FINAL_CLOSE_CODES:
                raise SocketClosed(f"{FINAL_CLOSE_CODES[code]} (websocket closed with {code})") from None
        except InvalidStatus as exc:
            raise SocketClosed(f"the websocket handshake was refused: HTTP {exc.response.status_code}") from None
        except (OSError, InvalidHandshake):
            pass  # server restarting or network down: try again
        drops += 1
        if drops > max_reconnects:
            raise SocketClosed(f"the job socket dropped {drops} times in a row; giving up")
        time.sleep(min(30.0, reconnect_delay * drops))
