"""The runnable examples in public docstrings run and say what they claim."""

import doctest
import importlib
import warnings

import pytest

MODULES = [
    "kerasafe", "kerasafe.errors", "kerasafe.storage", "kerasafe.manifest", "kerasafe.formats",
    "kerasafe.legacy", "kerasafe.legacy.to_keras2", "kerasafe.legacy.rules", "kerasafe.legacy.model_config",
    "kerasafe.legacy.table_keras1", "kerasafe.legacy.weights", "kerasafe.legacy.tf_functions", "kerasafe.legacy.stand_ins",
    "kerasafe.legacy.tf_resize", "kerasafe.legacy.tf_shape_values", "kerasafe.api", "kerasafe.inspection", "kerasafe.demo",
    "kerasafe.checkpoint.store", "kerasafe.checkpoint.policy", "kerasafe.checkpoint.callback", "kerasafe.checkpoint.resume",
    "kerasafe.checkpoint.writer", "kerasafe.formats.keras_zip", "kerasafe.formats.tf_checkpoint", "kerasafe.legacy.upgrade",
    "kerasafe.legacy.tf_ops", "kerasafe.legacy.optimizers", "kerasafe._keras_direct", "kerasafe.formats._direct",
    "kerasafe.formats.safetensors_format", "kerasafe.formats.guard", "kerasafe.formats.tf_optimizer_state",
    "kerasafe.scanning", "kerasafe.scanning.findings", "kerasafe.scanning.config_rules", "kerasafe.scanning.formats",
    "kerasafe.scanning.sarif", "kerasafe.scanning.graph_ops", "kerasafe.formats.savedmodel_graph",
    "kerasafe.distributed", "kerasafe.formats.sharded", "kerasafe.checkpoint.sharded_commit", "kerasafe.checkpoint.places",
    "kerasafe.remote", "kerasafe.pipeline.data", "kerasafe.serving.batcher", "kerasafe.serving.metrics", "kerasafe.serving.app",
    "kerasafe.export.rewrite", "kerasafe.export.targets",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_public_name_has_an_example():
    import kerasafe

    for name in kerasafe.__all__:
        obj = getattr(kerasafe, name)
        assert obj.__doc__ and ">>>" in obj.__doc__, name
