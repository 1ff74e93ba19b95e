"""Process plumbing both apps share, apart from the speech core: telling systemd how the process is
(``notify``), setting up logging (``logs``), turning bad settings into exit status 78 (``config``) and
reconnect delays (``backoff``). Nothing here knows about audio or models."""
