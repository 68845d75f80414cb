"""Serverless ONNX inference on AWS Lambda."""

#: The one place the version is written: pyproject reads it, and the image, which copies this package
#: without any distribution metadata, reports it from here.
__version__ = "0.1.0"
