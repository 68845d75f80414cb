"""The ``onnx-lambda`` command and everything else that runs on a developer's machine, never in Lambda.

The Lambda image copies only :mod:`onnx_lambda`, the runtime. This package builds on it and is never
imported by it (``tests/unit/test_package_boundary.py`` and ruff's TID251 hold that line):

* :mod:`.cli` and one module per command: :mod:`.serve`, :mod:`.publish`, :mod:`.tokens`,
  :mod:`.package`, :mod:`.invoke`; :mod:`.bench` and :mod:`.cost` carry their own commands;
* :mod:`.local`: the stand-ins for AWS (moto's S3 and Cognito, the Lambda runtime, API Gateway);
* :mod:`.export`: ``make model``, the served models built from their sources (torch lives only here).
"""
