"""Review gate: a result is held until you approve it, or sent back with feedback.

Here the check is a word in the output; in real use it is a test run, a linter, or a person.
"""

import asyncio

from claude_pool import Pool, PoolConfig, TaskState

PROMPT = "Write a haiku about waiting in line."
FEEDBACK = "Use the word 'queue' in it."


async def main() -> None:
    config = PoolConfig(model="claude-haiku-4-5", budget_microdollars=500_000)
    async with Pool(config, slots=1, store=":memory:") as pool:
        task_id = await pool.submit(PROMPT, review=True, max_rejections=2)
        record = await pool.wait(task_id)
        attempt = 1
        while record.state is TaskState.PENDING_REVIEW and record.result is not None:
            output = record.result.output.strip()
            print(f"attempt {attempt}:\n{output}")
            if "queue" in output.lower():
                record = await pool.approve(task_id)
                print("approved")
                break
            outcome = await pool.reject(task_id, FEEDBACK)
            if not outcome.requeued:
                record = outcome.task
                print(f"rejected {outcome.attempt} times: given up")
                break
            print(f"rejected: {FEEDBACK}")
            attempt = outcome.attempt
            record = await pool.wait(task_id)
        print(f"{task_id}: {record.state}")


asyncio.run(main())
