"""Code shared by the small zip-packaged functions (pre-traffic hook, synthetic canary).

Standard library only (boto3 comes with the Lambda runtime), so the layer stays a few kilobytes and
never drifts from the service's own wire formats: the tests check it against ``onnx_lambda``'s code.
"""
