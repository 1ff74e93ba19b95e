"""The stt-bridge benchmark: real processes, the shared speech set, figures beside a baseline measured in
the same run. ``python -m bench.run`` (``make bench``); see bench/RESULTS.md for what it measures and how.

Modules, one job each: ``plan`` (what a run covers), ``clips`` (the speech set, speech bounds, statistics),
``rig`` (Mosquitto, stt-server, workers, process sampling), ``baseline`` (offline faster-whisper decode),
``latency`` / ``accuracy`` / ``capacity`` / ``edge`` (the measurements), ``peers`` with ``wyoming_client``
and ``whisperlive_client`` (other projects on the same clips), ``goals`` and ``report`` (RESULTS.md, plots,
history).
"""
