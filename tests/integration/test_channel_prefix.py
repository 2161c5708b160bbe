"""Two installations on one real Redis (issue 15, item 7): pub/sub ignores Redis database numbers,
so only the channel-layer prefix keeps one installation's `job.<id>` / `user.<n>` frames from
the other's sockets."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer


pytestmark = pytest.mark.stack


async def _delivered(sender, group, text, receiver, channel, within=20.0):
    """Send until the receiver gets it: a pub/sub subscription reaches Redis a moment after
    group_add returns (longer on a loaded machine), and messages before that are not kept."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        await sender.group_send(group, {"type": "x.event", "text": text})
        try:
            return (await asyncio.wait_for(receiver.receive(channel), 0.5))["text"]
        except asyncio.TimeoutError:
            continue
    raise AssertionError(f"{text!r} never arrived")


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
            assert await _delivered(one, "job.1", "one's job", one, got["one"][1]) == "one's job"
            assert await _delivered(one, "user.1", "one's user", one, got["one"][1]) == "one's user"
            await asyncio.sleep(0.5)
            while True:  # drain repeats of the sends above
                try:
                    await asyncio.wait_for(one.receive(got["one"][1]), 0.2)
                except asyncio.TimeoutError:
                    break
            # two's subscription is live (it hears its own group), and hears nothing of one's.
            assert await _delivered(two, "job.1", "two's own", two, got["two"][1]) == "two's own"
            await asyncio.sleep(0.5)
            while True:
                try:
                    await asyncio.wait_for(two.receive(got["two"][1]), 0.2)
                except asyncio.TimeoutError:
                    break
            await one.group_send("job.1", {"type": "job.event", "text": "one's job again"})
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(two.receive(got["two"][1]), 1.0)
            # The same prefix (what every installation had before) does leak: the test can fail.
            leaky = RedisPubSubChannelLayer(hosts=[f"{redis_url}/7"], prefix="tyinstallone")
            try:
                channel = await leaky.new_channel()
                await leaky.group_add("job.1", channel)
                assert await _delivered(one, "job.1", "leak", leaky, channel) == "leak"
            finally:
                await leaky.flush()
        finally:
            await one.flush()
            await two.flush()

    asyncio.run(scenario())
