"""What only the tests need: a headless browser, a systemd notify socket, MQTT messages as recorded, the
server's /health and /metrics read as checks. What tests, bench and demo share lives in ``harness``."""
