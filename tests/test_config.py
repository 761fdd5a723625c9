from pathlib import Path

import pytest

from app.core.config import SIMULATOR_ENDPOINT_ID, ConfigError, load_settings

RUNPOD_VARS = ("RUNPOD_API_KEY", "RUNPOD_URL", "RUNPOD_ENDPOINT_ID", "RUNPOD_POLL_INTERVAL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in RUNPOD_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_no_runpod_settings_target_the_simulator() -> None:
    target = load_settings().runpod_target
    assert target.is_simulator
    assert target.base_url == "http://127.0.0.1:8001/v2"
    assert target.endpoint_id == SIMULATOR_ENDPOINT_ID


@pytest.mark.parametrize(
    ("url", "base", "endpoint"),
    [
        ("https://api.runpod.ai/v2/abc123/run", "https://api.runpod.ai/v2", "abc123"),
        ("https://api.runpod.ai/v2/abc123/runsync", "https://api.runpod.ai/v2", "abc123"),
        ("https://api.runpod.ai/v2/abc123", "https://api.runpod.ai/v2", "abc123"),
        ("http://127.0.0.1:8001/v2/demo/run", "http://127.0.0.1:8001/v2", "demo"),
    ],
)
def test_seed_form_url(monkeypatch: pytest.MonkeyPatch, url: str, base: str, endpoint: str) -> None:
    monkeypatch.setenv("RUNPOD_URL", url)
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_key")
    target = load_settings().runpod_target
    assert (target.base_url, target.endpoint_id, target.is_simulator) == (base, endpoint, False)


def test_base_url_plus_endpoint_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_URL", "https://proxy.example/v2/")
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "ep-9")
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_key")
    target = load_settings().runpod_target
    assert (target.base_url, target.endpoint_id) == ("https://proxy.example/v2", "ep-9")


def test_endpoint_id_alone_uses_runpods_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "ep-9")
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_key")
    assert load_settings().runpod_target.base_url == "https://api.runpod.ai/v2"


def test_missing_key_is_the_seed_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_URL", "https://api.runpod.ai/v2/abc/run")
    with pytest.raises(ConfigError, match=r"^RUNPOD_API_KEY is not set$"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("RUNPOD_URL", "not a url", "RUNPOD_URL must look like"),
        ("RUNPOD_POLL_INTERVAL", "fast", "RUNPOD_POLL_INTERVAL: "),
        ("RUNPOD_POLL_INTERVAL", "-1", "RUNPOD_POLL_INTERVAL: "),
    ],
)
def test_bad_values_give_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_key")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert "rp_key" not in message


def test_key_is_never_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOD_URL", "https://api.runpod.ai/v2/abc/run")
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_very_secret")
    settings = load_settings()
    assert "rp_very_secret" not in repr(settings)
    assert "rp_very_secret" not in str(settings.model_dump())


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "RUNPOD_URL=https://api.runpod.ai/v2/fromfile/run\nRUNPOD_API_KEY=k\n"
    )
    assert load_settings().runpod_target.endpoint_id == "fromfile"


def test_env_example_lists_every_setting() -> None:
    from app.core.config import Settings

    example = (Path(__file__).parent.parent / ".env.example").read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in example]
    assert missing == []
