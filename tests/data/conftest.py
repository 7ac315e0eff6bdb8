import pytest

from tests.data.layout_fixtures import write_avsbench_fixture, write_refavs_fixture


@pytest.fixture
def refavs_root(tmp_path):
    """A fresh hand-written Ref-AVS folder (3 videos, 5 rows, every split but one)."""
    return write_refavs_fixture(tmp_path / "refavs")


@pytest.fixture
def s4_root(tmp_path):
    return write_avsbench_fixture(tmp_path / "s4", "s4")


@pytest.fixture
def ms3_root(tmp_path):
    return write_avsbench_fixture(tmp_path / "ms3", "ms3")


@pytest.fixture
def official_root(tmp_path):
    """The Ref-AVS fixture with the official metadata's quirks: a repeated uid, a TODO row."""
    from tests.data.layout_fixtures import write_official_quirks_fixture

    return write_official_quirks_fixture(tmp_path / "official")
