"""``python -m claude_pool.cli``: the ``claude-pool`` command."""

from claude_pool.cli import main

if __name__ == "__main__":
    main()
