"""Websocket `ws/jobs/<id>/`: live events of one job, with replay from a sequence number."""

from __future__ import annotations

import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from webapp.jobs.access import get_job_for_user
from webapp.jobs.events import auth_group, events_after, group_name, user_changes_after, user_cursor, user_group
from webapp.monitoring import recorder


def _db(fn):
    """Socket reads (access check on connect, replay) run in a thread pool of their own, not in
    the one thread where Django runs every synchronous view: a busy page load does not hold up
    a websocket handshake (Daphne drops handshakes that take longer than a few seconds)."""
    return database_sync_to_async(fn, thread_sensitive=False)


def _signed_in(scope):
    """The scope's user when signed in and active, else None (the socket closes with 4401)."""
    user = scope.get("user")
    return user if user is not None and user.is_authenticated and user.is_active else None


class SignedInConsumer(AsyncJsonWebsocketConsumer):
    """Closes with 4401 when its user signs out (that session), changes their password or is
    deactivated (every session): webapp.accounts.sockets sends `auth.revoked` to `auth.<user>`."""

    async def replay_after(self, content) -> int | None:
        """The stream number n of a `{"after": n}` request, or None: not one (ignored), or over
        the socket's replay rate (answered `{"type": "error", "retry_after": s}`)."""
        try:
            after = max(0, int(content.get("after", 0)))
        except (TypeError, ValueError, AttributeError):
            return None
        wait = self._replay_wait()
        if wait:
            await self.send_json({"type": "error", "error": f"too many replay requests; ask again in {wait:.1f} s",
                                  "retry_after": round(wait, 1)})
            return None
        return after

    def _replay_wait(self) -> float:
        """0 when a replay may go now (and takes its token), else the seconds until one may."""
        now = time.monotonic()
        tokens, last = getattr(self, "_replay_bucket", (float(REPLAY_BURST), now))
        tokens = min(float(REPLAY_BURST), tokens + (now - last) / REPLAY_EVERY)
        if tokens < 1.0:
            self._replay_bucket = (tokens, now)
            return (1.0 - tokens) * REPLAY_EVERY
        self._replay_bucket = (tokens - 1.0, now)
        return 0.0

    async def join_auth_group(self, user) -> None:
        self.auth_group = auth_group(user.pk)
        await self.channel_layer.group_add(self.auth_group, self.channel_name)

    async def auth_revoked(self, message):
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        if message.get("session") in (None, key):
            await self.close(code=4401)

    def count_open(self, socket: str) -> None:
        """Counted in the open-websockets gauge until it closes (webapp/monitoring/recorder.py)."""
        self.counted_as = socket
        recorder.gauge_add(recorder.WEBSOCKETS, 1, socket=socket)
        recorder.inc(recorder.WEBSOCKETS_OPENED, socket=socket)

    async def disconnect(self, code):
        if getattr(self, "counted_as", None):
            recorder.gauge_add(recorder.WEBSOCKETS, -1, socket=self.counted_as)
            self.counted_as = None
        for group in (getattr(self, "group", None), getattr(self, "auth_group", None)):
            if group:
                await self.channel_layer.group_discard(group, self.channel_name)


REPLAY_BURST = 10  # replays a socket may ask for at once
REPLAY_EVERY = 1.0  # then one per this many seconds


class JobConsumer(SignedInConsumer):
    async def connect(self):
        user = _signed_in(self.scope)
        if user is None:
            await self.close(code=4401)
            return
        try:
            self.job = await _db(get_job_for_user)(user, self.scope["url_route"]["kwargs"]["pk"])
        except Http404:
            await self.close(code=4404)
            return
        self.group = group_name(self.job.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.join_auth_group(user)
        await self.accept()
        self.count_open("job")

    async def receive_json(self, content, **kwargs):
        """`{"after": n}`: send the stored events numbered above n (replay / gap fill).

        Replays are rate-limited per socket (a token bucket: REPLAY_BURST at once, then one per
        REPLAY_EVERY seconds): a page asks once per reconnect or gap, a client asking hundreds of
        times a second gets `{"type": "error", "retry_after": s}` instead of megabytes."""
        after = await self.replay_after(content)
        if after is None:
            return
        events = await _db(events_after)(self.job, after)
        await self.send_json({"type": "events", "events": events, "replay": True})

    async def job_events(self, message):
        # The publisher serialised the frame once for every viewer; older messages carry events.
        if "frame" in message:
            await self.send(text_data=message["frame"])
        else:
            await self.send_json({"type": "events", "events": message["events"]})


class UserConsumer(SignedInConsumer):
    """`ws/user/`: state changes of the signed-in user's own jobs (jobs list, toasts)."""

    async def connect(self):
        user = _signed_in(self.scope)
        if user is None:
            await self.close(code=4401)
            return
        self.user_id = user.pk
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.join_auth_group(user)
        await self.accept()
        self.count_open("user")
        # Where the stream stands: a page that loses the socket asks for what came after it.
        await self.send_json({"type": "hello", "seq": await _db(user_cursor)(user_id=user.pk)})

    async def receive_json(self, content, **kwargs):
        """`{"after": n}`: every job of this user whose status changed after stream number n
        (missed while the socket was away), each once with its state now; rate-limited."""
        after = await self.replay_after(content)
        if after is None:
            return
        for change in await _db(user_changes_after)(self.user_id, after):
            await self.send_json({"type": "job", "replay": True, **change})

    async def job_changed(self, message):
        await self.send_json({"type": "job", "job": message["job"], "seq": message.get("seq")})

    async def inference_update(self, message):
        # A try-the-model answer ("prediction") or an ONNX export's outcome ("onnx"), for the
        # user who asked (the group is theirs alone).
        await self.send_json({"type": message["what"], message["what"]: message["payload"]})
