"""Starts the real `sieve-server` binary for the SDK tests.

The binary: $SIEVE_SERVER_BIN, else target/release/sieve-server of this checkout (built by
`cargo test --workspace --release` or `cargo build --release`). Models: $SIEVE_MODELS_DIR, else
../shared/models beside the checkout. Either missing fails the tests with a message; nothing is
skipped.
"""

import os
import pathlib
import subprocess
import tempfile
import threading

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
ADMIN_KEY = "py-admin-key"
READ_KEY = "py-read-key"
EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
CROSS_ENCODER = "sieve/sieve-ce-minilm-l6-scifact"
DEMO_CORPUS = REPO / "server" / "demo" / "corpus.jsonl"


def _binary() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("SIEVE_SERVER_BIN", REPO / "target" / "release" / "sieve-server"))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: build it with `cargo build --release --bin sieve-server` "
                    "or set SIEVE_SERVER_BIN", pytrace=False)
    return path


def _models() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("SIEVE_MODELS_DIR", REPO.parent / "shared" / "models"))
    for model in (EMBEDDER, CROSS_ENCODER):
        folder = path / model.replace("/", "--")
        if not (folder / "config.json").is_file():
            pytest.fail(f"model {model} is missing: no {folder}/config.json (set SIEVE_MODELS_DIR)",
                        pytrace=False)
    return path


@pytest.fixture(scope="session")
def server():
    """`host:port` of a fresh server with an embedder, the SciFact cross-encoder and API keys."""
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "sieve.toml"
        config.write_text(
            f'models_dir = "{_models()}"\n'
            f'default_embedder = "{EMBEDDER}"\n'
            f'[[models]]\nname = "{EMBEDDER}"\n'
            f'[[models]]\nname = "{CROSS_ENCODER}"\n'
        )
        env = dict(os.environ, SIEVE_ADMIN_KEYS=ADMIN_KEY, SIEVE_READ_KEYS=READ_KEY)
        process = subprocess.Popen(
            [str(_binary()), "--config", str(config), "--data-dir", str(pathlib.Path(tmp) / "data"),
             "--listen", "127.0.0.1:0", "--log-level", "warn"],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        address = []
        ready = threading.Event()

        def read_stdout():
            for line in process.stdout:
                if line.startswith("sieve-server listening on "):
                    address.append(line.split()[-1])
                    ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(120):
            process.kill()
            pytest.fail("sieve-server did not report its address within 120 s", pytrace=False)
        try:
            yield address[0]
        finally:
            process.terminate()
            assert process.wait(60) == 0, "sieve-server exits cleanly on SIGTERM"


@pytest.fixture
def admin(server):
    import sieve

    with sieve.Client(server, api_key=ADMIN_KEY, timeout=120) as client:
        yield client
