"""Two installations on one real Redis (issue 15, item 7): pub/sub ignores Redis database numbers,
so only the channel-layer prefix keeps one installation's `job.<id>` / `user.<n>` frames from
the other's sockets."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer

from tests.stack import free_port, redis_binary, wait_for

pytestmark = pytest.mark.stack


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    proc = subprocess.Popen([redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    import redis

    try:
        wait_for(lambda: redis.Redis(port=port).ping(), 20, "redis-server")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_installations_with_their_own_prefix_hear_only_their_groups(redis_url):
    async def scenario():
        # Different DB numbers, as in the report, and different prefixes, as the settings give them.
        one = RedisPubSubChannelLayer(hosts=[f"{redis_url}/3"], prefix="tyinstallone")
        two = RedisPubSubChannelLayer(hosts=[f"{redis_url}/7"], prefix="tyinstalltwo")
        try:
            got = {}
            for name, layer in [("one", one), ("two", two)]:
                channel = await layer.new_channel()
                for group in ("job.1", "user.1"):
                    await layer.group_add(group, channel)
                got[name] = (layer, channel)
            await asyncio.sleep(0.2)  # subscriptions reach Redis
            await one.group_send("job.1", {"type": "job.event", "text": "one's job"})
            await one.group_send("user.1", {"type": "user.event", "text": "one's user"})
            received = [await asyncio.wait_for(one.receive(got["one"][1]), 5) for _ in range(2)]
            assert sorted(m["text"] for m in received) == ["one's job", "one's user"]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(two.receive(got["two"][1]), 1.0)
            # The same prefix (what every installation had before) does leak: the test can fail.
            leaky = RedisPubSubChannelLayer(hosts=[f"{redis_url}/7"], prefix="tyinstallone")
            try:
                channel = await leaky.new_channel()
                await leaky.group_add("job.1", channel)
                await asyncio.sleep(0.2)
                await one.group_send("job.1", {"type": "job.event", "text": "leak"})
                assert (await asyncio.wait_for(leaky.receive(channel), 5))["text"] == "leak"
            finally:
                await leaky.flush()
        finally:
            await one.flush()
            await two.flush()

    asyncio.run(scenario())
