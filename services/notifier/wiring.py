"""The notifier's composition root: `wire(settings)` builds the clients, the adapters and the use
cases, connected to nothing yet. The service (`app`), its commands (`__main__`) and the
benchmarks use it; tests pass their own adapters or fakes to `use_cases`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier.composer import Composer
from services.notifier.deliveries import Deliveries
from services.notifier.dispatcher import Dispatcher, Throttle
from services.notifier.erasure import NotifierErasure
from services.notifier.health import SmtpHealth
from services.notifier.mailer import Mailer
from services.notifier.mailer_pool import MailerPool
from services.notifier.notifier import Notifier
from services.notifier.people import People
from services.notifier.ports import (
    DeliveriesPort,
    MailerPort,
    RegistryPort,
    SuppressionListPort,
    SuppressionsPort,
)
from services.notifier.registry import Registry
from services.notifier.report_intake import ReportIntake
from services.notifier.retry import Backoff
from services.notifier.sending import SendDue
from services.notifier.settings import NotifierSettings
from services.notifier.suppressions import Suppressions
from shared import mongo


@dataclass(frozen=True)
class UseCases:
    """What the entry points call: registry and pilot use cases, the send step, its loop, the
    personal pages' use cases and the providers' reports (None without a suppression list)."""

    notifier: Notifier
    send_due: SendDue
    dispatcher: Dispatcher
    people: People
    reports: ReportIntake | None = None


def use_cases(
    settings: NotifierSettings,
    registry: RegistryPort,
    deliveries: DeliveriesPort,
    mailer: MailerPort,
    suppressions: SuppressionsPort | None = None,
    suppression_list: SuppressionListPort | None = None,
) -> UseCases:
    """The use cases over the given ports (real adapters in `wire`, fakes in unit tests);
    `suppression_list`: where provider reports are recorded."""
    health = SmtpHealth(
        Backoff(settings.retry_first_delay_seconds, settings.retry_max_delay_seconds)
    )
    throttle = Throttle(settings.send_rate_per_second)
    send_due = SendDue(
        settings,
        registry,
        deliveries,
        mailer,
        suppressions,
        Composer.of(settings),
        throttle,
        health,
    )
    dispatcher = Dispatcher(
        send_due, throttle, health, settings.poll_interval_seconds, settings.smtp_connections
    )
    notifier = Notifier(settings, registry, deliveries, suppressions, wake=dispatcher.wake)
    people = People(registry, deliveries, settings.link_keys())
    reports = (
        None
        if suppression_list is None
        else ReportIntake(suppression_list, registry.key, settings.soft_bounce_limit)
    )
    return UseCases(notifier, send_due, dispatcher, people, reports)


@dataclass(frozen=True)
class Wiring:
    """The notifier's adapters and use cases, and the client behind them."""

    settings: NotifierSettings
    client: AsyncMongoClient[mongo.Document]
    db: AsyncDatabase[mongo.Document]
    registry: Registry
    deliveries: Deliveries
    suppressions: Suppressions
    mailer: MailerPool
    erasure: NotifierErasure
    cases: UseCases

    async def ensure_indexes(self) -> None:
        """The indexes of every collection the notifier reads by a field."""
        await self.registry.ensure_indexes()
        await self.deliveries.ensure_indexes()
        await self.erasure.ensure_indexes()

    async def close(self, grace: float | None = None) -> None:
        """Say QUIT to the SMTP server (within `grace` seconds), close the MongoDB client."""
        await self.mailer.close(grace=grace)
        await self.client.close()


def wire(settings: NotifierSettings) -> Wiring:
    """Build the clients, the adapters and the use cases (no I/O: nothing connects yet)."""
    client = mongo.new_client(settings.mongodb_url)
    db = mongo.database(client, settings.mongodb_database)
    registry = Registry(db, settings.email_keys(), require_confirmation=settings.double_opt_in)
    deliveries = Deliveries(db, timedelta(seconds=settings.send_lease_seconds))
    suppressions = Suppressions(db)
    mailer = MailerPool(
        [
            Mailer(
                settings.smtp_host,
                settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password.get_secret_value(),
                starttls=settings.smtp_starttls,
                implicit_tls=settings.smtp_implicit_tls,
                ca_file=settings.smtp_ca_file,
                timeout=settings.smtp_timeout_seconds,
                deadline=settings.send_deadline_seconds,
            )
            for _ in range(settings.smtp_connections)
        ]
    )
    erasure = NotifierErasure(db, registry, settings.erasure_step_delay_seconds)
    cases = use_cases(settings, registry, deliveries, mailer, suppressions, suppressions)
    return Wiring(settings, client, db, registry, deliveries, suppressions, mailer, erasure, cases)
