"""Webhooks: every event a webhook wants is POSTed to it, signed, retried, and never lost.

The store keeps the outbox (:class:`~claude_pool.store.base.OutboxStore`): logging an event
adds a pending delivery per webhook wanting it, in the same write, so a delivery exists as
soon as its event does. :class:`WebhookDeliverer` (a background task of every pool) claims
due deliveries with a lease, POSTs them, and records the outcome; a failed attempt is retried
after ``webhook_retry_secs``, twice as long each time (at most an hour), until
``webhook_max_attempts``. A pool that dies mid-delivery leaves its leased deliveries due
again when the lease runs out, for itself after a restart or any other pool on the store.
Delivery is at least once: a receiver that must not act twice keys on
``X-Claude-Pool-Delivery``.

The body is the event's JSON (secrets redacted, :func:`claude_pool.events.public_payload`);
with a secret, ``X-Claude-Pool-Signature`` is ``sha256=`` and the hex HMAC-SHA256 of the
body under it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from claude_pool.bus import EventBus
from claude_pool.config import Settings, WebhookConfig
from claude_pool.events import Event, parse_event, public_payload
from claude_pool.store.base import Delivery, Store, Webhook
from claude_pool.types import new_task_id, now_ms

if TYPE_CHECKING:
    import httpx  # imported when delivery starts: it costs a quarter of `import claude_pool`

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Claude-Pool-Signature"
MAX_BACKOFF_SECS = 3600.0
IDLE_CHECK_SECS = 30.0
"""Longest wait between looks at the outbox (for webhooks another process added)."""
_BATCH = 20
_PARALLEL = 4


def sign(secret: str, body: bytes) -> str:
    """The ``X-Claude-Pool-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def config_webhook_id(config: WebhookConfig) -> str:
    """A configured webhook's id: the same for the same URL and events at every start."""
    digest = hashlib.sha256(f"{config.url} {sorted(config.events)}".encode()).hexdigest()
    return f"config-{digest[:16]}"


def new_webhook_id() -> str:
    return "hook-" + new_task_id().removeprefix("task-")


class WebhookDeliverer:
    """Delivers the store's webhook outbox (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._wake = asyncio.Event()
        self._wanted: frozenset[str] = frozenset()
        self._hooks: dict[str, Webhook] = {}
        self.delivered = 0
        """Deliveries made by this process."""
        self.failures = 0
        """Failed attempts in this process (each retry counts)."""
        self._recorded = asyncio.Event()
        bus.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        if "*" in self._wanted or event.type in self._wanted:
            self._wake.set()

    async def wait_attempts(self, count: int) -> None:
        """Wait until this process has recorded ``count`` attempts (made or failed) in all."""
        while self.delivered + self.failures < count:
            self._recorded.clear()
            await self._recorded.wait()

    def wake(self) -> None:
        """Look at the outbox now (a webhook was added)."""
        self._wake.set()

    def backoff_secs(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed attempt."""
        return float(min(MAX_BACKOFF_SECS, self._settings.webhook_retry_secs * 2 ** (attempts - 1)))

    @property
    def _lease_ms(self) -> int:
        return int((self._settings.webhook_timeout_secs * 2 + 5) * 1000)

    async def configure(self, configs: Sequence[WebhookConfig]) -> None:
        """Keep the configured webhooks in the store: add or update each, and remove those an
        earlier configuration had that this one has not."""
        now = self._clock()
        wanted = {config_webhook_id(c): c for c in configs}
        for hook in await self._store.list_webhooks():
            if hook.source == "config" and hook.id not in wanted:
                await self._store.delete_webhook(hook.id)
        for hook_id, config in wanted.items():
            await self._store.put_webhook(
                Webhook(
                    id=hook_id, url=config.url, events=list(config.events),
                    secret=config.secret_value(self._settings.env or None),
                    source="config", created_at_ms=now,
                )
            )  # fmt: skip
        await self._refresh()

    async def _refresh(self) -> None:
        self._hooks = {hook.id: hook for hook in await self._store.list_webhooks()}
        self._wanted = frozenset(kind for hook in self._hooks.values() for kind in hook.events)

    async def run(self) -> None:
        """Deliver what is due, then wait for an event a webhook wants or the next retry.

        The HTTP client is made when the first delivery is due: a pool without webhooks
        never imports httpx (a quarter of ``import claude_pool``) nor builds its TLS context."""
        client: httpx.AsyncClient | None = None
        try:
            failing = False
            while True:
                try:
                    await self._refresh()
                    due = await self._store.next_delivery_due_ms()
                    if due is not None and due <= self._clock():
                        client = client or self._new_client()
                        while await self.deliver_due(client):
                            pass
                        due = await self._store.next_delivery_due_ms()
                    failing = False
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not failing:
                        failing = True
                        log.error("webhook outbox unavailable (%s); will retry", exc)
                    due = None
                wait = IDLE_CHECK_SECS
                if due is not None:
                    wait = min(wait, max(0.0, (due - self._clock()) / 1000))
                self._wake.clear()
                if wait > 0:
                    try:
                        async with asyncio.timeout(wait):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            if client is not None:
                await client.aclose()

    def _new_client(self) -> httpx.AsyncClient:
        import httpx

        return httpx.AsyncClient(
            transport=self._transport,
            timeout=self._settings.webhook_timeout_secs,
            headers={"user-agent": "claude-pool"},
            follow_redirects=False,
        )

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Claim and deliver one batch of due deliveries; how many there were."""
        batch = await self._store.claim_deliveries(self._clock(), self._lease_ms, _BATCH)
        if not batch:
            return 0
        if any(d.webhook_id not in self._hooks for d in batch):
            await self._refresh()
        limit = asyncio.Semaphore(_PARALLEL)

        async def one(delivery: Delivery) -> None:
            async with limit:
                await self._deliver(client, delivery)

        async with asyncio.TaskGroup() as tg:
            for delivery in batch:
                tg.create_task(one(delivery))
        return len(batch)

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        hook = self._hooks.get(delivery.webhook_id)
        if hook is None:  # removed meanwhile
            await self._finish(delivery, False, None, "the webhook was removed", final=True)
            return
        event = parse_event(delivery.payload)
        event.seq = delivery.seq
        body = json.dumps(public_payload(event), separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            "x-claude-pool-event": event.type,
            "x-claude-pool-delivery": str(delivery.id),
            "x-claude-pool-webhook": hook.id,
        }
        if hook.secret:
            headers[SIGNATURE_HEADER.lower()] = sign(hook.secret, body)
        status: int | None = None
        import httpx

        try:
            response = await client.post(hook.url, content=body, headers=headers)
            status = response.status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await self._finish(delivery, error is None, status, error)

    async def _finish(
        self,
        delivery: Delivery,
        delivered: bool,
        status: int | None,
        error: str | None,
        *,
        final: bool = False,
    ) -> None:
        now = self._clock()
        attempts = delivery.attempts + 1
        retry_at: int | None = None
        if delivered:
            self.delivered += 1
        else:
            self.failures += 1
            if not final and attempts < self._settings.webhook_max_attempts:
                retry_at = now + int(self.backoff_secs(attempts) * 1000)
        try:
            await self._store.finish_delivery(
                delivery.id, delivered=delivered, status=status, error=error, now_ms=now,
                retry_at_ms=retry_at,
            )  # fmt: skip
        finally:
            self._recorded.set()
        if not delivered:
            # Logged once recorded: a log line about an attempt means the store has it.
            log.warning(
                "webhook %s: delivery %d of event %d (%s) failed: %s; %s",
                delivery.webhook_id, delivery.id, delivery.seq, delivery.event_type, error,
                f"attempt {attempts}, retrying in {self.backoff_secs(attempts):g}s"
                if retry_at is not None else f"given up after {attempts} attempt(s)",
                extra={"webhook_id": delivery.webhook_id, "event_seq": delivery.seq},
            )  # fmt: skip


def webhook_from_api(url: str, events: Iterable[str], secret: str | None, now: int) -> Webhook:
    """A webhook added through the API (checked like a configured one)."""
    config = WebhookConfig.model_validate({"url": url, "events": list(events), "secret": secret})
    return Webhook(
        id=new_webhook_id(), url=config.url, events=config.events or ["*"],
        secret=config.secret_value(), source="api", created_at_ms=now,
    )  # fmt: skip


__all__ = [
    "SIGNATURE_HEADER",
    "WebhookDeliverer",
    "config_webhook_id",
    "new_webhook_id",
    "sign",
    "webhook_from_api",
]
