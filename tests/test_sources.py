import io
import os

from cnntool.sources import MissingSource, display_name, expand


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return str(path)


def test_order_follows_arguments_and_directories_are_sorted(tmp_path):
    b = _touch(tmp_path / "d" / "b.png")
    a = _touch(tmp_path / "d" / "a.JPG")
    _touch(tmp_path / "d" / "notes.txt")
    _touch(tmp_path / "d" / "sub" / "c.png")
    z = _touch(tmp_path / "z.png")
    assert list(expand([z, str(tmp_path / "d")])) == [z, a, b]
    assert list(expand([str(tmp_path / "d")], recursive=True)) == [a, b, str(tmp_path / "d" / "sub" / "c.png")]


def test_globs_list_files_and_stdin(tmp_path):
    a = _touch(tmp_path / "a 1.png")
    b = _touch(tmp_path / "b.png")
    (tmp_path / "list.txt").write_text("b.png\n\na 1.png\n")
    assert list(expand([str(tmp_path / "*.png")])) == [a, b]
    assert list(expand([f"@{tmp_path / 'list.txt'}"])) == [b, a]
    assert list(expand(["-"], stdin=io.StringIO(f"{a}\n{b}\n"))) == [a, b]


def test_missing_inputs_are_markers_not_failures(tmp_path):
    a = _touch(tmp_path / "a.png")
    out = list(expand([str(tmp_path / "nope.png"), a, str(tmp_path / "*.gif"), "@" + str(tmp_path / "none.txt")]))
    assert isinstance(out[0], MissingSource) and out[0].reason == "no such file or directory"
    assert out[1] == a
    assert isinstance(out[2], MissingSource) and "pattern" in out[2].reason
    assert isinstance(out[3], MissingSource) and "list file" in out[3].reason


def test_existing_file_with_glob_characters_is_taken_literally(tmp_path):
    odd = _touch(tmp_path / "x[1].png")
    assert list(expand([odd])) == [odd]


def test_directory_named_like_an_image_reaches_the_opener(tmp_path):
    (tmp_path / "fake.jpg").mkdir()
    assert list(expand([str(tmp_path / "fake.jpg")])) == [str(tmp_path / "fake.jpg")]


def test_display_name_escapes_undecodable_bytes():
    name = os.fsdecode(b"caf\xe9.png")
    shown = display_name(name)
    shown.encode("utf-8")  # always printable
    assert shown.endswith(".png") and "\\x" in shown


def test_stdin_pauses_where_no_path_is_ready_yet(monkeypatch):
    import sys

    from cnntool.sources import PAUSE

    read_end, write_end = os.pipe()
    os.write(write_end, b"a.png\nb.png\n")
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end))
    paths = expand(["-"], pauses=True)
    assert [next(paths), next(paths), next(paths)] == ["a.png", "b.png", PAUSE]
    os.write(write_end, b"caf\xe9.png\n")
    os.close(write_end)
    assert list(paths) == [os.fsdecode(b"caf\xe9.png")]
