"""The README's TOML example is a valid configuration file."""

import re
from pathlib import Path

from hadamnp.runs.config import resolve_config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_toml_example_resolves(tmp_path):
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README shows no TOML example"
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text("\n".join(line[2:] if line.startswith("  ") else line
                                  for line in block.splitlines()), encoding="utf-8")
        config = resolve_config(path=path)
        assert config.preset == "pmnist" and config.lr == 3e-4
        assert dict(config.lr_scales) == {"signs": 0.1} and config.clip_roles == ("signs",)
