"""What the tests, the benchmarks and the demo all drive the product with, and none of them owns: the
speech set and its word error rate (``speech``), real child processes: a Mosquitto, the stt-server,
free ports (``procs``), a ``/stt`` client written from the documented protocol (``stt_client``) and
pacing at the speed of audio (``pacing``). Not part of the product: nothing under ``apps/`` or
``libs/`` imports it."""
