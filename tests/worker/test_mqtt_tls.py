"""MQTT over TLS with a username and password, as a broker exposed beyond localhost should be run:
the worker verifies the broker's certificate against MQTT_CA_FILE and logs in with its credentials."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.procs import Proc, free_port, wait_port
from tests.worker import helpers as h


def _cert_authority(d: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1 (the name the worker connects to)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=stt-test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.pem")


@pytest.fixture
def tls_broker():
    """Mosquitto with a plain listener for the test's subscriber and a TLS + password one for the
    worker (per-listener settings)."""
    for tool in ("openssl", "mosquitto_passwd"):
        assert shutil.which(tool), f"{tool} is missing: run make setup"
    # not pytest's tmp_path: mosquitto started as root reads its files as the `mosquitto` user, who
    # cannot enter pytest's 0700 folders
    tmp_path = Path(tempfile.mkdtemp(prefix="stt-tls-"))
    _cert_authority(tmp_path)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "worker", "s3cret"], check=True)
    plain, tls = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings true\n"
        f"listener {plain} 127.0.0.1\nallow_anonymous true\n"
        f"listener {tls} 127.0.0.1\nallow_anonymous false\npassword_file {tmp_path}/passwd\n"
        f"cafile {tmp_path}/ca.pem\ncertfile {tmp_path}/server.pem\nkeyfile {tmp_path}/server.key\n"
        "persistence false\n")
    tmp_path.chmod(0o755)
    for f in tmp_path.iterdir():
        f.chmod(0o644)
    proc = Proc(["mosquitto", "-c", str(conf)], name="mosquitto-tls")
    wait_port(plain, 10, proc)
    wait_port(tls, 10, proc)
    yield plain, tls, tmp_path
    proc.stop()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_worker_publishes_over_tls_with_credentials(tls_broker, tmp_path: Path):
    """MQTT_TLS=1 with MQTT_CA_FILE, MQTT_USERNAME and MQTT_PASSWORD: the worker's finals and its
    retained availability reach the broker through the TLS listener (which refuses anonymous clients)."""
    plain, tls, certs = tls_broker
    wav = h.speech_wav(tmp_path / "two.wav", h.SHORT)
    col = h.Collector(plain)
    env = h.worker_env(tls, wav, MQTT_TLS="1", MQTT_CA_FILE=str(certs / "ca.pem"), MQTT_USERNAME="worker",
                       MQTT_PASSWORD="s3cret")
    w = h.start_worker(env)
    try:
        assert w.wait(120) == 0, w.output()[-2000:]
        finals = col.wait_finals(len(h.SHORT), 10, w)
    finally:
        w.stop()
        col.close()
    assert [f["site_id"] for f in finals] == [h.SITE] * len(h.SHORT)
    assert "online" in col.payloads("/availability")
    assert "mqtt_connected" in w.output()


def test_wrong_password_is_named_and_retried(tls_broker, tmp_path: Path):
    """A wrong MQTT_PASSWORD: the broker refuses, the worker logs an error naming the variables to
    check, keeps running and retrying (a broker may refuse while starting), publishes nothing."""
    plain, tls, certs = tls_broker
    col = h.Collector(plain)
    env = h.worker_env(tls, "-", MQTT_TLS="1", MQTT_CA_FILE=str(certs / "ca.pem"), MQTT_USERNAME="worker",
                       MQTT_PASSWORD="wrong")
    w = h.start_worker(env, stdin=subprocess.PIPE)
    try:
        refused = h.wait_log(w, "mqtt_refused", 30, n=2)
        assert w.alive(), h.tail(w)
    finally:
        w.stop()
        col.close()
    assert all(e["level"] == "error" for e in refused), refused
    assert all("MQTT_PASSWORD" in e["hint"] for e in refused), refused
    assert refused[0]["reason"] in ("Not authorized", "Bad user name or password"), refused
    assert col.payloads("/availability") == []
