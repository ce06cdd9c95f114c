from pathlib import Path

import pytest

from raylive.settings import Settings, load_settings, settings_dict

CONFIG = Path(__file__).parent.parent / "configs" / "raylive.yaml"


def test_shipped_config_file_states_the_defaults() -> None:
    assert settings_dict(load_settings(CONFIG)) == settings_dict(Settings())


def test_overrides_and_unknown_keys(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("rtmp:\n  port: 1936\nhls:\n  target_duration_s: 4\n")
    s = load_settings(f)
    assert s.rtmp.port == 1936 and s.hls.target_duration_s == 4.0 and s.http.port == 8000
    f.write_text("rtmp:\n  prot: 1\n")
    with pytest.raises(ValueError, match="unknown setting rtmp.prot"):
        load_settings(f)
