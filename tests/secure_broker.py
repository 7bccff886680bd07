"""A private Kafka broker that authenticates and authorises its clients, as production should.

One KRaft node from the local stack's jars (as tests/private_broker.py) with two client listeners:

- `SASL_SSL` (SCRAM-SHA-512 over TLS) on `bootstrap`: one user per service and `admin`, their
  credentials written into the cluster metadata when the data directory is formatted;
- `SSL` with client certificates required (mutual TLS) on `tls_bootstrap`: the certificate's
  CN is the principal (`CN=intake` is `User:intake`), so the same ACLs apply on both.

The StandardAuthorizer denies what no ACL allows; `admin` is a super user. The controller
listener stays plaintext on 127.0.0.1 (SCRAM cannot authenticate a KRaft controller, whose
metadata holds the SCRAM credentials), so its anonymous principal is a super user too: only the
node itself talks to it. Certificates come from `openssl`: a CA, the broker's certificate for
127.0.0.1, and a client certificate per user.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from shared import topics
from shared.kafka import topics_with_dlq
from shared.kafka_security import KafkaSecurity
from tests.private_broker import TEMPLATE, LocalBroker, answers_api_versions
from tests.support import REPO, free_port

USERS = ("admin", "intake", "analytics", "notifier", "topics")
ACL_TOOL = REPO / "tests" / "KafkaAcls.java"


@dataclass(frozen=True)
class Acl:
    """One ALLOW entry: `principal` may do `operation` on the resource."""

    user: str
    operation: str  # READ, WRITE, DESCRIBE, ...
    resource_type: str  # TOPIC, GROUP, CLUSTER
    name: str
    pattern: str = "LITERAL"  # or PREFIXED

    def argument(self) -> str:
        """As tests/KafkaAcls.java reads it."""
        return f"User:{self.user},{self.operation},{self.resource_type},{self.pattern},{self.name}"


def service_acls(environment: dict[str, str]) -> list[Acl]:
    """What each service (and the topic Job) may do, as docs/security.md ("Kafka ACLs") grants
    it, for the topics and consumer groups that `environment` names. READ and WRITE imply
    DESCRIBE."""
    responses, pilots = environment["TOPIC_RESPONSES"], environment["TOPIC_PILOTS"]
    erasures, reviews = environment["TOPIC_ERASURES"], environment["TOPIC_REVIEWS"]
    # .registry, .pilots, .erasures, .reviews
    notifier_groups = f"{environment['NOTIFIER_GROUP_ID']}."
    return [
        Acl("intake", "WRITE", "TOPIC", responses),
        Acl("intake", "WRITE", "TOPIC", pilots),
        Acl("intake", "WRITE", "TOPIC", erasures),
        Acl("intake", "WRITE", "TOPIC", reviews),
        Acl("analytics", "READ", "TOPIC", responses),
        Acl("analytics", "WRITE", "TOPIC", topics.dlq(responses)),
        Acl("analytics", "READ", "GROUP", environment["ANALYTICS_GROUP_ID"]),
        Acl("analytics", "READ", "TOPIC", erasures),
        Acl("analytics", "WRITE", "TOPIC", topics.dlq(erasures)),
        Acl("analytics", "READ", "GROUP", f"{environment['ANALYTICS_GROUP_ID']}.erasures"),
        Acl("analytics", "READ", "TOPIC", reviews),
        Acl("analytics", "WRITE", "TOPIC", topics.dlq(reviews)),
        Acl("analytics", "READ", "GROUP", f"{environment['ANALYTICS_GROUP_ID']}.reviews"),
        Acl("notifier", "READ", "TOPIC", responses),
        Acl("notifier", "READ", "TOPIC", pilots),
        Acl("notifier", "WRITE", "TOPIC", topics.dlq(responses)),
        Acl("notifier", "WRITE", "TOPIC", topics.dlq(pilots)),
        Acl("notifier", "READ", "TOPIC", erasures),
        Acl("notifier", "WRITE", "TOPIC", topics.dlq(erasures)),
        Acl("notifier", "READ", "TOPIC", reviews),
        Acl("notifier", "WRITE", "TOPIC", topics.dlq(reviews)),
        Acl("notifier", "READ", "GROUP", notifier_groups, "PREFIXED"),
        *(
            Acl("topics", operation, "TOPIC", name)
            for name in topics_with_dlq(responses, pilots, erasures, reviews)
            for operation in ("CREATE", "DESCRIBE")
        ),
    ]


def scram_login(user: str, password: str) -> str:
    """A JAAS entry that logs in as `user` with SCRAM."""
    module = "org.apache.kafka.common.security.scram.ScramLoginModule"
    return f'{module} required username="{user}" password="{password}";'


def openssl(*arguments: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *arguments], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"openssl {arguments[0]} failed: {done.stderr}")


def make_certificates(directory: Path, names: Iterable[str]) -> None:
    """`ca.pem`, and `<name>.pem` + `<name>.key` signed by it for each name (CN=name), valid
    for 127.0.0.1 and localhost, for servers and clients alike."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=cities-test-ca"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        cwd=directory,
    )
    (directory / "leaf.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    for serial, name in enumerate(names, start=1):
        openssl(
            *("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}"),
            *("-keyout", f"{name}.key", "-out", f"{name}.csr"),
            cwd=directory,
        )
        openssl(
            *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
            *("-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem"),
            *("-extfile", "leaf.ext"),
            cwd=directory,
        )


class SecureBroker(LocalBroker):
    """A single-node KRaft broker with SASL_SSL and mutual-TLS listeners and ACLs."""

    def __init__(self, libs: Path, directory: Path) -> None:
        self.tls_port = free_port()
        self.tls_bootstrap = f"127.0.0.1:{self.tls_port}"
        self.certificates = directory / "certificates"
        self.passwords = {user: secrets.token_urlsafe(18) for user in USERS}
        make_certificates(self.certificates, ["broker", *USERS])
        # The broker's PEM key store: its private key and certificate in one file.
        (self.certificates / "broker-keystore.pem").write_text(
            (self.certificates / "broker.key").read_text()
            + (self.certificates / "broker.pem").read_text()
        )
        super().__init__(libs, directory)

    def _render_config(self) -> None:
        super()._render_config()
        listeners = re.compile(
            r"^(listeners|advertised\.listeners|inter\.broker\.listener\.name|"
            r"listener\.security\.protocol\.map)=.*$\n",
            re.M,
        )
        text = listeners.sub("", self.config.read_text())
        certificates = self.certificates
        admin = self.passwords["admin"]
        text += f"""
# Client listeners: SCRAM over TLS, and mutual TLS; the controller's stays on loopback.
listeners=SASL_SSL://127.0.0.1:{self.port},SSL://127.0.0.1:{self.tls_port},CONTROLLER://127.0.0.1:{self.controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:{self.port},SSL://127.0.0.1:{self.tls_port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_login("admin", admin)}
listener.name.ssl.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT
ssl.keystore.type=PEM
ssl.keystore.location={certificates / "broker-keystore.pem"}
ssl.truststore.type=PEM
ssl.truststore.location={certificates / "ca.pem"}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
"""
        self.config.write_text(text)

    def _format_options(self) -> list[str]:
        return [
            option
            for user, password in self.passwords.items()
            for option in ("--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]")
        ]

    def _serves_clients(self) -> bool:
        # The client listeners want TLS; the plaintext controller listener answers once the
        # node runs, and the log line (checked too) says the broker side started.
        return answers_api_versions(self.controller_port)

    def scram(self, user: str, password: str | None = None) -> KafkaSecurity:
        """A client of the SASL_SSL listener as `user` (with its password unless given)."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            username=user,
            password=self.passwords[user] if password is None else password,
            ca_file=str(self.certificates / "ca.pem"),
        )

    def mutual_tls(self, user: str | None) -> KafkaSecurity:
        """A client of the mutual-TLS listener with `user`'s certificate (None: without one)."""
        return KafkaSecurity(
            protocol="SSL",
            ca_file=str(self.certificates / "ca.pem"),
            cert_file=None if user is None else str(self.certificates / f"{user}.pem"),
            key_file=None if user is None else str(self.certificates / f"{user}.key"),
        )

    def scram_environment(self, user: str, password: str | None = None) -> dict[str, str]:
        """A service's Kafka settings for the SASL_SSL listener as `user`."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": self.passwords[user] if password is None else password,
            "KAFKA_SSL_CA_FILE": str(self.certificates / "ca.pem"),
        }

    def mutual_tls_environment(self, user: str) -> dict[str, str]:
        """A service's Kafka settings for the mutual-TLS listener with `user`'s certificate."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.tls_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CA_FILE": str(self.certificates / "ca.pem"),
            "KAFKA_SSL_CERT_FILE": str(self.certificates / f"{user}.pem"),
            "KAFKA_SSL_KEY_FILE": str(self.certificates / f"{user}.key"),
        }

    def grant(self, acls: Iterable[Acl]) -> None:
        """Create `acls`, as the admin, with Kafka's own admin client."""
        properties = self.directory / "admin.properties"
        admin = self.passwords["admin"]
        properties.write_text(
            f"bootstrap.servers={self.bootstrap}\n"
            "security.protocol=SASL_SSL\n"
            "sasl.mechanism=SCRAM-SHA-512\n"
            f"sasl.jaas.config={scram_login('admin', admin)}\n"
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={self.certificates / 'ca.pem'}\n"
        )
        classes = self.directory / "acl-tool"
        if not (classes / "KafkaAcls.class").exists():
            compiled = subprocess.run(
                ["javac", "-cp", f"{self.libs}/*", "-d", str(classes), str(ACL_TOOL)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if compiled.returncode != 0:
                raise AssertionError(f"javac {ACL_TOOL.name} failed:\n{compiled.stderr}")
        command = [
            "java",
            f"-Dlog4j2.configurationFile={TEMPLATE / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.log.parent}",
            "-cp",
            f"{self.libs}/*:{classes}",
            "KafkaAcls",
            str(properties),
            *(acl.argument() for acl in acls),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"creating ACLs failed:\n{done.stdout}\n{done.stderr}")
