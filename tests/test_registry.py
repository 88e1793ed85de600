import pytest

from cnntool import tasks
from cnntool.models import catalog
from cnntool.registry import InputSpec, ModelSpec, Registry, UnknownModelError


@pytest.fixture
def registry():
    """A registry of the real catalog's entries; what a test registers vanishes after it."""
    copy = Registry()
    copy._specs, copy._defaults = dict(catalog.REGISTRY._specs), dict(catalog.REGISTRY._defaults)
    return copy


def _spec(name, task="classify"):
    return ModelSpec(name=name, task=task, builder="torch.nn:Identity", input=InputSpec(size=(8, 8), channels=1,
                     mean=(0.5,), std=(0.5,)))


def test_duplicate_names_are_errors(registry):
    registry.register(_spec("test-dup-model"))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_spec("test-dup-model"))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownModelError) as info:
        catalog.get("no-such-model")
    assert "valid:" in str(info.value) and "no-such-model" in str(info.value)


def test_task_filter_and_mismatch(registry):
    registry.register(_spec("test-detect-model", task="detect"))
    assert "test-detect-model" in registry.names("detect")
    assert "test-detect-model" not in registry.names("classify")
    with pytest.raises(UnknownModelError, match="for task 'classify'"):
        registry.get("test-detect-model", task="classify")
    with pytest.raises(ValueError, match="valid tasks"):
        tasks.canonical("segment")


def test_every_registered_model_is_of_a_registered_task_under_its_one_name():
    assert {spec.task for spec in catalog.specs()} <= set(tasks.names())
    assert tasks.canonical("face-embed") == "verify-face"  # the name older weights files carry


def test_specs_validate_their_fields():
    with pytest.raises(ValueError):
        ModelSpec(name="x", task="classify", builder="no-colon", input=InputSpec(size=(1, 1)))
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
    for task in tasks.names():
        if catalog.names(task) and task in ("classify",):
            assert catalog.default(task) in catalog.names(task)
