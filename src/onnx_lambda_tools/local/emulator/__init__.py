"""API Gateway (HTTP API) and Lambda on a laptop, without Docker.

``onnx-lambda serve --lambda`` runs the production request path locally: an HTTP front that routes,
authorizes and maps requests the way an HTTP API does (routes and scopes read from ``template.yaml``),
in front of a pool of real Lambda execution environments (the Runtime Interface Emulator running the
image's CMD under ``awslambdaric``). It reads the template with :mod:`onnx_lambda_tools.local.cloudformation`.

* :mod:`.routes`: the HttpApi routes, authorizers, scopes and function settings;
* :mod:`.gateway`: API Gateway's own answers, the JWT authorizer and the payload 2.0 response mapping;
* :mod:`.pool`: the execution environments: cold starts, reuse, throttling, timeouts, reaping;
* :mod:`.front`: the ASGI app that puts them together;
* :mod:`.serve`: ``serve --lambda``: the local stack's settings handed to all of the above.
"""
