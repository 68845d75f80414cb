"""Serverless ONNX inference on AWS Lambda."""
