"""The models and nothing else: no Discord, no database, no settings object.

`engine.models.MODELS` is the one list of models; each is a slice of its own
(`engine.sentiment`, `engine.scene`: config and limits, serving, training, evaluation,
bench). Shared parts: `engine.lstm` (the numpy LSTM step both serve with), `engine.text`
(tokenization), `engine.registry` and `engine.checkpoints` (versions and checkpoints on
disk), `engine.errors` (messages people can act on). Importing `engine` or a slice is cheap:
TensorFlow is loaded only by the modules that train.
"""
