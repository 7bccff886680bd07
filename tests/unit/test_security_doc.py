"""docs/security.md's Kafka ACL table is the one the SASL broker test grants
(tests/secure_broker.py), so what the document promises is what the test proves."""

from __future__ import annotations

import re
from pathlib import Path

from services.analytics.settings import AnalyticsSettings
from services.notifier.settings import NotifierSettings
from shared import topics
from tests.secure_broker import Acl, service_acls

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def documented_acls() -> set[Acl]:
    """The rows of the "Kafka ACLs" table, one Acl per topic a row names."""
    section = DOC.read_text(encoding="utf-8").split("### Kafka ACLs", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| User:(\w+) \| (\w+) \| (\w+) \| ([^|]+) \| (\w+) \|$", section, re.M)
    assert rows, "no ACL table in docs/security.md"
    return {
        Acl(user, operation, resource, name.strip(), pattern)
        for user, operation, resource, names, pattern in rows
        for name in names.split(",")
    }


def test_document_the_acls_the_broker_test_grants() -> None:
    defaults = {
        "TOPIC_RESPONSES": topics.RESPONSES,
        "TOPIC_PILOTS": topics.PILOTS,
        "TOPIC_ERASURES": topics.ERASURES,
        "TOPIC_REVIEWS": topics.REVIEWS,
        "ANALYTICS_GROUP_ID": AnalyticsSettings.model_fields["analytics_group_id"].default,
        "NOTIFIER_GROUP_ID": NotifierSettings.model_fields["notifier_group_id"].default,
    }
    assert documented_acls() == set(service_acls(defaults))


def test_grant_writes_of_responses_pilots_erasures_and_reviews_to_the_intake_only() -> None:
    writers = {
        acl.user
        for acl in documented_acls()
        if acl.operation == "WRITE"
        and acl.name in (topics.RESPONSES, topics.PILOTS, topics.ERASURES, topics.REVIEWS)
    }
    assert writers == {"intake"}
