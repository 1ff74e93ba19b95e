"""Real parts for the tests: a Mosquitto on a free port, the real stt-server, the speech set."""
