"""The README's configuration examples are what the controller reads: every ```toml block
parses (controller.config), with the files it names standing in as readable files here, and
the cems-probe command lines it shows parse with the probe's own parser."""

import pathlib
import re
import shlex
import tomllib

import pytest

from controller.config import parse_config

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
COMMANDS = [" ".join(part.strip() for part in block.split("\\\n"))
            for block in re.findall(r"```sh\n(cems-probe passive .*?)```", README.read_text(), re.S)]
FILE_KEYS = ("_file", "_ca", "_cert", "_key")


def with_files(data: dict, tmp_path) -> dict:
    """`data` with every file it names made in tmp_path (a config names files that exist)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out[key] = with_files(value, tmp_path)
        elif key.endswith(FILE_KEYS) and isinstance(value, str):
            path = tmp_path / pathlib.Path(value).name
            path.write_text("secret\n")
            out[key] = str(path)
        else:
            out[key] = value
    return out


def test_the_readme_has_its_examples():
    assert len(BLOCKS) >= 3 and any("[records]" in b for b in BLOCKS)
    assert COMMANDS


@pytest.mark.parametrize("block", BLOCKS, ids=[b.split("\n")[0] for b in BLOCKS])
def test_every_toml_example_parses(block, tmp_path):
    parse_config(with_files(tomllib.loads(block), tmp_path))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_probe_command_parses(command, monkeypatch):
    from probes import cli  # pylint: disable=import-outside-toplevel
    seen = {}
    monkeypatch.setattr(cli, "_run", lambda args, parser: seen.setdefault("args", args) and 0)
    assert cli.main(shlex.split(command)[1:]) == 0
    assert seen["args"].command == "passive"
