"""Watching events: what happens in a pool, live, and replayed from the event log.

A listener sees each event as it happens; ``events(after=n)`` replays the log from any number
and then goes on live, which is what a consumer that reconnects needs.
"""

import asyncio

from claude_pool import Event, Pool, PoolConfig, describe

QUIET = {"task_text", "task_turn", "spend_recorded", "slot_state_changed"}


def show(event: Event) -> None:
    if event.type not in QUIET:
        print(f"live   #{event.seq} {describe(event)}")


async def main() -> None:
    config = PoolConfig(model="claude-haiku-4-5", budget_microdollars=500_000)
    async with Pool(config, slots=2, store=":memory:") as pool:
        pool.add_listener(show)
        await pool.fan_out(["Say hello.", "Say goodbye."])
        latest = (await pool.status()).latest_event_seq
        # A consumer that connects now catches up from the start of the log, up to the latest
        # event (after which the stream would go on live).
        async for event in pool.events(after=0):
            if event.type == "task_finished":
                print(f"replay #{event.seq} {describe(event)}")
            if event.seq >= latest:
                break


asyncio.run(main())
