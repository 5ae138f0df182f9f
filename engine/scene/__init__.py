"""The playwright, one slice: config and limits, corpus, numpy/LiteRT serving, training, evaluation.

    config     SceneConfig (+ PROFILES), SceneLimits, SceneRequest, char naming (plain Python)
    corpus     Vocabulary, Corpus: the text read and split once (numpy)
    sampler    NumpyLSTM: the float32 step, on the shared `engine.lstm` cell (numpy)
    quantized  QuantizedLSTM: the int8 LiteRT step and its cache
    writer     SceneWriter: check, stream, generate, generate_batch; cut_at_boundary
    evaluate   evaluate_text (in memory), evaluate_scene (a version on its held-out block)
    train      train_scene, build_model, export_weights (Keras)
    bench      `playbill bench scene` (Keras)

Importing the slice never imports TensorFlow: the serving modules do not need it, and the
training names below are the one hop to `engine.scene.train`, taken on first use.
"""

from playbill.engine.scene.config import (
    BACKENDS,
    KERAS_FILE,
    NAME,
    PROFILES,
    VOCABULARY_FILE,
    WEIGHTS_FILE,
    SceneConfig,
    SceneLimits,
    SceneRequest,
    char_list,
    char_name,
    check_backend,
    get_profile,
    unknown_characters_message,
)
from playbill.engine.scene.corpus import Corpus, Vocabulary, corpus_path, epoch_arrays, read_corpus, validation_arrays
from playbill.engine.scene.evaluate import evaluate_scene, evaluate_text
from playbill.engine.scene.writer import SceneWriter, cut_at_boundary

_TRAINING = ("train_scene", "build_model", "export_weights")

__all__ = [
    "BACKENDS", "KERAS_FILE", "NAME", "PROFILES", "VOCABULARY_FILE", "WEIGHTS_FILE", "Corpus", "SceneConfig",
    "SceneLimits", "SceneRequest", "SceneWriter", "Vocabulary", "char_list", "char_name", "check_backend",
    "corpus_path", "cut_at_boundary", "epoch_arrays", "evaluate_scene", "evaluate_text", "get_profile",
    "read_corpus", "unknown_characters_message", "validation_arrays", *_TRAINING,
]


def __getattr__(name: str):
    """The one hop to Keras: `train_scene` and friends load `engine.scene.train` when first asked for."""
    if name in _TRAINING:
        from playbill.engine.scene import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
