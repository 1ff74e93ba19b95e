"""`make demo`: the worker transcribing a bundled recording onto an MQTT broker, as a subscriber sees it."""
