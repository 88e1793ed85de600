"""Output folders are made, or refused with the option's name, before a command does any work."""

import pytest

from cnntool.errors import ConfigError
from cnntool.folders import writable_folder


def test_missing_parents_are_made(tmp_path):
    assert writable_folder(tmp_path / "a" / "b", "--out").is_dir()


def test_a_file_in_the_way_is_named_with_the_option(tmp_path):
    (tmp_path / "file").write_text("x")
    for folder in (tmp_path / "file", tmp_path / "file" / "below"):
        with pytest.raises(ConfigError, match=r"^--out: cannot write to .*\(a file stands where a folder should be\)$"):
            writable_folder(folder, "--out")


def test_a_folder_that_takes_no_file_is_refused(tmp_path, monkeypatch):
    # a read-only folder, simulated: the tests may run as root, who writes anywhere
    def refuse(**_):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("cnntool.folders.tempfile.TemporaryFile", refuse)
    with pytest.raises(ConfigError, match=r"^--save: cannot write to .* \(Permission denied\)$"):
        writable_folder(tmp_path, "--save")
