"""The provisioned Mosquitto refuses anonymous clients and enforces the ACLs.

An ACL denial of a publish is silent for MQTT 3.1.1 and only a reason code for v5, so these
tests check what a subscriber receives.
"""

from __future__ import annotations

import queue
import secrets
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from meterhub.provision import broker as prov

BrokerInfo = Any

pytestmark = pytest.mark.broker


def _client(user: str | None, password: str | None) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"test-{secrets.token_hex(4)}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if user is not None:
        c.username_pw_set(user, password)
    return c


def _connect(c: mqtt.Client, info: BrokerInfo) -> int:
    result: queue.Queue[int] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: result.put(rc.value)
    c.connect(info.host, info.port)
    c.loop_start()
    try:
        return result.get(timeout=10)
    except queue.Empty:
        return -1


def test_anonymous_clients_are_refused(broker: BrokerInfo) -> None:
    c = _client(None, None)
    rc = _connect(c, broker)
    c.loop_stop()
    c.disconnect()
    assert rc >= 0x80, f"anonymous connect returned reason code {rc:#x}"


def test_wrong_password_is_refused(broker: BrokerInfo) -> None:
    c = _client(broker.collector_user, "not-the-password")
    rc = _connect(c, broker)
    c.loop_stop()
    assert rc >= 0x80


def test_concentrator_may_publish_only_under_its_own_prefix(broker: BrokerInfo, settings) -> None:  # type: ignore[no-untyped-def]
    a = prov.add_client(settings, f"TC{secrets.token_hex(3)}", "concentrator")
    b = prov.add_client(settings, f"TC{secrets.token_hex(3)}", "concentrator")
    time.sleep(0.3)  # the broker reloads its password and ACL files on SIGHUP

    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    sub = _client(broker.collector_user, broker.collector_password)
    sub.on_message = lambda _c, _u, msg: received.put((msg.topic, msg.payload))
    subscribed: queue.Queue[list[int]] = queue.Queue()
    sub.on_subscribe = lambda _c, _u, _m, rcs, _p: subscribed.put([r.value for r in rcs])
    assert _connect(sub, broker) == 0
    # a group of its own: a lingering collector session in group "meterhub" would take
    # its share of the messages
    sub.subscribe(f"$share/t{secrets.token_hex(3)}/meterhub/v1/c/+/up/#", qos=1)
    assert all(r < 0x80 for r in subscribed.get(timeout=10))

    own = f"meterhub/v1/c/{a.id}/up/readings"
    other = f"meterhub/v1/c/{b.id}/up/readings"
    forger = _client(a.id, a.password)
    assert _connect(forger, broker) == 0
    denied = forger.publish(other, b"forged", qos=1)
    # Mosquitto refuses the publish (v5 reason code) and may drop the connection.
    deadline = time.monotonic() + 5
    while not denied.is_published() and forger.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    forger.loop_stop()
    forger.disconnect()

    pub = _client(a.id, a.password)
    assert _connect(pub, broker) == 0
    pub.publish(own, b"genuine", qos=1).wait_for_publish(10)

    topic, payload = received.get(timeout=10)
    assert (topic, payload) == (own, b"genuine")
    time.sleep(0.5)
    assert received.empty(), "a concentrator published under another concentrator's prefix"

    # a concentrator cannot read another concentrator's downlink either
    spy = _client(a.id, a.password)
    spied: queue.Queue[bytes] = queue.Queue()
    spy.on_message = lambda _c, _u, msg: spied.put(msg.payload)
    assert _connect(spy, broker) == 0
    spy.subscribe(f"meterhub/v1/c/{b.id}/down/#", qos=1)
    time.sleep(0.3)
    sub.publish(f"meterhub/v1/c/{b.id}/down/relay", b"for b only", qos=1).wait_for_publish(10)
    time.sleep(0.5)
    assert spied.empty()
    for c in (sub, pub, spy):
        c.loop_stop()
        c.disconnect()


def test_acl_text_is_explicit_per_client() -> None:
    text = prov.acl_text(
        {
            "C9": prov.Client("C9", "concentrator", "x"),
            "col": prov.Client("col", "collector", "y"),
        }
    )
    assert "topic write meterhub/v1/c/C9/up/#" in text
    assert "topic read meterhub/v1/c/+/up/#" in text
    assert "pattern" not in text


def test_bad_client_ids_and_roles_are_refused(settings) -> None:  # type: ignore[no-untyped-def]
    from meterhub.provision._util import ProvisionError

    with pytest.raises(ProvisionError, match="client id"):
        prov.add_client(settings, "a/b", "concentrator")
    with pytest.raises(ProvisionError, match="role"):
        prov.add_client(settings, "C1", "admin")
