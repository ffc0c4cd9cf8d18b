import socket
import subprocess
import sys

import pytest


def test_outside_connection_is_refused_and_logged(tmp_path, monkeypatch):
    import girl_netguard

    log = tmp_path / "log"
    monkeypatch.setenv("GIRL_NETGUARD_LOG", str(log))
    with pytest.raises(girl_netguard.NetworkBlocked):
        socket.create_connection(("93.184.216.34", 80), timeout=1)
    assert "93.184.216.34" in log.read_text()


def test_localhost_is_allowed():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname(), timeout=2)
    c.close()
    srv.close()


def test_subprocesses_are_guarded_too(tmp_path):
    code = ("import socket\ntry:\n    socket.getaddrinfo('huggingface.co', 443)\nexcept ConnectionRefusedError as e:\n"
            "    print('blocked', e)\n")
    env_log = tmp_path / "log"
    import os

    env = {**os.environ, "GIRL_NETGUARD_LOG": str(env_log)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "blocked" in out.stdout
    assert "huggingface.co" in env_log.read_text()
