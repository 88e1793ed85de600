"""The corpus is built once per session in a temporary directory; tests that take a `bad_item` or a
`good_item` argument run once per corpus kind of that expectation, named after the kind."""

from __future__ import annotations

import shutil
import tempfile

import pytest

from .corpus import ERROR, OK, CorpusItem, build_corpus

_CORPUS = pytest.StashKey[tuple[str, list[CorpusItem]]]()


def session_corpus(config: pytest.Config) -> tuple[str, list[CorpusItem]]:
    if _CORPUS not in config.stash:
        directory = tempfile.mkdtemp(prefix="cnntool-corpus-")
        config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))
        config.stash[_CORPUS] = (directory, build_corpus(directory))
    return config.stash[_CORPUS]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for argument, expected in (("bad_item", ERROR), ("good_item", OK)):
        if argument in metafunc.fixturenames:
            items = [i for i in session_corpus(metafunc.config)[1] if i.expected == expected]
            metafunc.parametrize(argument, [
                pytest.param(i, id=i.name, marks=[pytest.mark.skip(reason=i.skip)] if i.skip else [])
                for i in items])


@pytest.fixture(scope="session")
def corpus(request: pytest.FixtureRequest) -> tuple[str, list[CorpusItem]]:
    """(directory, items) of the session's corpus."""
    return session_corpus(request.config)
