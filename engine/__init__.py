"""The models and nothing else: no Discord, no database.

Importing `engine` is cheap; TensorFlow is imported only by the modules that train or
load a Keras model.
"""
