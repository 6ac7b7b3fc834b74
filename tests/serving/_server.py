"""A real uvicorn server in a thread for any ``Settings``, and copies of a bundle that
differ from it in one chosen way (for reloads)."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(settings: Any) -> Iterator[str]:
    """The service for ``settings`` on 127.0.0.1, its base URL while the block runs."""
    import uvicorn

    from serving.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def copy_bundle(bundle: Path, target: Path, *, rehash: str | None = None,
                signature: dict[str, Any] | None = None) -> Path:
    """A copy of ``bundle`` at ``target``. ``rehash``: a new ``doc_string`` in the ONNX
    graph, so the copy predicts the same but has another bundle hash (a new export of the
    same model). ``signature``: top-level keys of signature.json replaced."""
    import hashlib

    shutil.copytree(bundle, target)
    sig_path = target / "signature.json"
    sig = json.loads(sig_path.read_text(encoding="utf-8"))
    if rehash is not None:
        import onnx

        model_path = target / sig["model"]["file"]
        proto = onnx.load(str(model_path))
        proto.doc_string = rehash
        onnx.save(proto, str(model_path))
        sig["bundle_hash"] = hashlib.sha256(model_path.read_bytes()).hexdigest()
    sig.update(signature or {})
    sig_path.write_text(json.dumps(sig, indent=2), encoding="utf-8")
    return target
