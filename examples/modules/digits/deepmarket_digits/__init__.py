"""deepmarket's reference DEEPaaS module: a handwritten-digit classifier.

`deepmarket_digits.api` is the `deepaas.v2.model` entry point; `classifier` holds the model
(training and inference, plain numpy), `images` turns uploads into model input and draws
the PNG answer, `store` decides where weights live.
"""

__version__ = "1.0.0"
