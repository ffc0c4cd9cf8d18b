# Loaded at interpreter start-up when tests/netguard is on PYTHONPATH (set by tests/conftest.py).
import os

if os.environ.get("GIRL_NETGUARD") == "1":
    import girl_netguard

    girl_netguard.install()
