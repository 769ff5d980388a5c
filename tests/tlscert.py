"""One way for every test to get a throwaway certificate for 127.0.0.1.

It reuses ``compat/tls.py`` (the ``openssl`` command, else the ``cryptography`` package, a
dev dependency), so no test ever skips for want of a certificate.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_TLS = Path(__file__).resolve().parent.parent / "compat" / "tls.py"


def make_cert(directory: str | Path) -> tuple[str, str]:
    """Write a self-signed certificate (its own CA) and key into ``directory``."""
    spec = importlib.util.spec_from_file_location("runtime_job_test_tls", _TLS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cert, key = module.make_self_signed(Path(directory))
    return str(cert), str(key)
