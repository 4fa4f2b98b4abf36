"""The framework adapters and OpenTelemetry are extras: ``import embedsdk`` imports none of
them, and an adapter whose framework is missing says which extra to install (the telemetry, when
it is used). Runs in every environment."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

FRAMEWORKS = ("langchain", "langchain_core", "llama_index", "pydantic", "opentelemetry")


def test_import_embedsdk_imports_no_framework() -> None:
    code = (
        "import sys, embedsdk, embedsdk.testing\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == ""


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("embedsdk.langchain", "langchain_core", "langchain"),
        ("embedsdk.langchain", "pydantic", "langchain"),
        ("embedsdk.llama_index", "llama_index", "llama-index"),
    ],
)
def test_a_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, blocked: str, extra: str
) -> None:
    # The public path and the module behind it (embedsdk.integrations.*), as if never imported.
    implementation = module.replace("embedsdk.", "embedsdk.integrations.")
    for name in (module, implementation):
        monkeypatch.delitem(sys.modules, name, raising=False)
    for name in [m for m in sys.modules if m == blocked or m.startswith(blocked + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # "import blocked" now fails
    with pytest.raises(ImportError, match=rf"pip install 'embedsdk\[{extra}\]'"):
        importlib.import_module(module)
    assert module not in sys.modules and implementation not in sys.modules


def test_telemetry_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from embedsdk import telemetry

    for name in [m for m in sys.modules if m.split(".")[0] == "opentelemetry"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # "import opentelemetry" now fails
    with pytest.raises(ImportError, match=r'pip install "embedsdk\[otel\]"'):
        telemetry.instrument()
