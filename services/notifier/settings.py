"""The notifier's settings (environment variables; see README, "Configuration")."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from services.notifier.sns import TOPIC_ARN
from services.notifier.unsubscribe import LinkKeys
from shared.personal import EmailKeys
from shared.settings import Secret, Secrets, ServiceSettings, rotation_values

DEFAULT_SEND_DEADLINE_SECONDS = 20.0


class NotifierSettings(ServiceSettings):
    """Everything the notifier reads from its environment."""

    notifier_host: str = "0.0.0.0"
    notifier_port: int = 8002
    notifier_group_id: str = "notifier"
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    # Implicit TLS (SMTPS, usually port 465); SMTP_STARTTLS upgrades a plain connection instead.
    smtp_implicit_tls: bool = False
    # PEM file of the authorities that sign the SMTP server's certificate; empty: the system's.
    smtp_ca_file: str = ""
    # The most one send may take, from connecting to the reply to DATA: at most half the lease,
    # so a slow server cannot outlast it. Unset: `send_deadline_seconds`.
    smtp_send_deadline_seconds: float | None = Field(default=None, gt=0)
    mail_from: str = "Cities Project <pilots@cities.example.org>"
    public_base_url: str = "http://localhost:8002"
    # No secret has a default: the notifier does not start without them (`shared.settings`).
    operator_token: Secret
    # Signing keys of link tokens; several separated by spaces while rotating: the first signs
    # new links, all verify (`unsubscribe`).
    unsubscribe_secret: Secrets
    # Key of the opaque id of an email address in links; long-lived, never rotated.
    email_id_secret: Secret
    # Key of the keyed hash that names a focal point in every record (`shared.personal`); the
    # same value in every service, never rotated.
    email_key_secret: Secret
    # Retries of transient SMTP failures: exponential from the first delay up to the cap.
    retry_first_delay_seconds: float = Field(default=1.0, gt=0)
    # The cap keeps a message waiting at most this long after the server came back (plus one
    # poll), so it is bounded to well under a minute.
    retry_max_delay_seconds: float = Field(default=30.0, gt=0, le=50)
    max_attempts: int = Field(default=50, gt=0)
    # A delivery left "sending" by a replica that died is picked up again after this lease.
    send_lease_seconds: float = Field(default=60.0, gt=0)
    # How often an idle dispatcher looks for retries that came due (new work wakes it at once).
    poll_interval_seconds: float = Field(default=2.0, gt=0, le=10)
    # Messages per second over the SMTP connections (a token bucket); 0 means no limit.
    send_rate_per_second: float = Field(default=50.0, ge=0)
    # SMTP connections of one replica, each sending one message at a time (`mailer_pool`).
    smtp_connections: int = Field(default=1, ge=1, le=32)
    # False: this replica registers focal points and creates deliveries but sends nothing;
    # replicas with True send them. Lets the senders be as few as an SMTP quota allows while
    # the consumers scale with the partitions.
    dispatcher_enabled: bool = True
    # Pilots matching one focal point within this many seconds go out as one digest; 0: at once.
    digest_window_seconds: float = Field(default=0.0, ge=0)
    # Provider reports (`provider_reports`). Soft bounces of one address after which it is
    # suppressed, each report counted once.
    soft_bounce_limit: int = Field(default=3, ge=1, le=100)
    # The SNS topics whose Amazon SES notifications are taken, space-separated ARNs. Unset: the
    # SES endpoint takes none (any AWS account can sign SNS messages: the topic is the check).
    ses_topic_arns: str = ""
    # The basic-auth password in Postmark's webhook URL; several separated by spaces while
    # rotating. Required like every secret (a deployment without Postmark sets a random one).
    postmark_webhook_secret: Secrets

    @field_validator("ses_topic_arns")
    @classmethod
    def _topic_arns(cls, value: str) -> str:
        for arn in value.split():
            if not TOPIC_ARN.fullmatch(arn):
                raise ValueError(f"SES_TOPIC_ARNS: {arn!r} is not an SNS topic ARN")
        return value

    @property
    def postmark_secrets(self) -> list[str]:
        """The accepted Postmark webhook passwords (every value of the rotation list)."""
        return rotation_values(self.postmark_webhook_secret.get_secret_value())

    # Settled deliveries older than this lose what describes the person (`erasure`), swept
    # every RETENTION_SWEEP_SECONDS.
    personal_data_retention_days: float = Field(default=365.0, gt=0)
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # A pause between the steps of an erasure: for fault tests only (0 in service).
    erasure_step_delay_seconds: float = Field(default=0.0, ge=0, le=10)
    # Most responses the registry takes from Kafka in one batch (a few commands per batch,
    # whatever its size: `registry.register_many`).
    registry_batch_size: int = Field(default=5000, gt=0, le=10_000)
    # Double opt-in: pilot emails only to addresses whose owner confirmed them (`consent`).
    # Off only where a test is about something else (SMTP mechanics); never in a deployment.
    double_opt_in: bool = True
    # An address not confirmed within this time is marked expired and its personal data dropped.
    confirmation_ttl_seconds: float = Field(default=7 * 86400.0, gt=0)
    # At most one confirmation email per address within this time, whoever fills in the form.
    confirmation_resend_seconds: float = Field(default=86400.0, ge=0)
    # The weekly digest goes out on this weekday (0 = Monday) at this hour (UTC).
    digest_weekday: int = Field(default=0, ge=0, le=6)
    digest_hour: int = Field(default=8, ge=0, le=23)

    @property
    def unsubscribe_secrets(self) -> list[str]:
        """The unsubscribe secrets: the first signs new links, every one is accepted."""
        return rotation_values(self.unsubscribe_secret.get_secret_value())

    @property
    def send_deadline_seconds(self) -> float:
        """The overall deadline of one send: SMTP_SEND_DEADLINE_SECONDS, by default 20 s or
        half of SEND_LEASE_SECONDS when that is less."""
        if self.smtp_send_deadline_seconds is not None:
            return self.smtp_send_deadline_seconds
        return min(DEFAULT_SEND_DEADLINE_SECONDS, self.send_lease_seconds / 2)

    @model_validator(mode="after")
    def _smtp_consistent(self) -> Self:
        if self.smtp_starttls and self.smtp_implicit_tls:
            raise ValueError("SMTP_STARTTLS and SMTP_IMPLICIT_TLS exclude each other: pick one")
        if self.smtp_ca_file and not Path(self.smtp_ca_file).is_file():
            raise ValueError(f"SMTP_CA_FILE {self.smtp_ca_file!r} is not a readable file")
        half_lease = self.send_lease_seconds / 2
        if self.send_deadline_seconds > half_lease:
            raise ValueError(
                "SMTP_SEND_DEADLINE_SECONDS must be at most half of SEND_LEASE_SECONDS "
                f"({self.send_deadline_seconds:g} > {half_lease:g}): a send that outlasts "
                "the lease can be sent again by another replica"
            )
        return self

    def email_keys(self) -> EmailKeys:
        """The keyed hash of addresses (`shared.personal`)."""
        return EmailKeys(self.email_key_secret.get_secret_value())

    def link_keys(self) -> LinkKeys:
        """The keys of the tokens in personal links (`unsubscribe`)."""
        return LinkKeys(self.email_id_secret.get_secret_value(), tuple(self.unsubscribe_secrets))
