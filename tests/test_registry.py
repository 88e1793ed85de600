import pytest

from cnntool import registry
from cnntool.registry import InputSpec, ModelSpec, UnknownModelError


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch):
    """Entries registered by a test vanish after it, so other tests see only the real catalog."""
    registry.names()  # load the real catalog first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_DEFAULTS", dict(registry._DEFAULTS))


def _spec(name, task="classify"):
    return ModelSpec(name=name, task=task, builder="torch.nn:Identity", input=InputSpec(size=(8, 8), channels=1,
                     mean=(0.5,), std=(0.5,)))


def test_duplicate_names_are_errors():
    registry.register(_spec("test-dup-model"))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_spec("test-dup-model"))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownModelError) as info:
        registry.get("no-such-model")
    assert "valid:" in str(info.value) and "no-such-model" in str(info.value)


def test_task_filter_and_mismatch():
    registry.register(_spec("test-detect-model", task="detect"))
    assert "test-detect-model" in registry.names("detect")
    assert "test-detect-model" not in registry.names("classify")
    with pytest.raises(UnknownModelError, match="for task 'classify'"):
        registry.get("test-detect-model", task="classify")
    with pytest.raises(ValueError, match="valid tasks"):
        registry.names("segment")


def test_specs_validate_their_fields():
    with pytest.raises(ValueError):
        ModelSpec(name="x", task="bogus", builder="a:b", input=InputSpec(size=(1, 1)))
    with pytest.raises(ValueError):
        InputSpec(size=(1, 1), channels=2)
    with pytest.raises(ValueError):
        InputSpec(size=(1, 1), resize="squash")


def test_build_drops_unset_overrides():
    spec = ModelSpec(name="test-build", task="classify", builder="torch.nn:Dropout", kwargs={"p": 0.25},
                     input=InputSpec(size=(4, 4)))
    assert spec.build(p=None).p == 0.25
    assert spec.build(p=0.5).p == 0.5


def test_every_task_with_models_has_a_registered_default():
    for task in registry.TASKS:
        if registry.names(task) and task in ("classify",):
            assert registry.default(task) in registry.names(task)
