"""Stand-ins for AWS on a laptop, no account and no Docker.

* :mod:`.cloud`: moto's server on loopback, holding the model bucket and a Cognito user pool;
* :mod:`.lambda_runtime`: the Runtime Interface Emulator in front of ``awslambdaric``, running the image's CMD;
* :mod:`.events`: API Gateway HTTP API events, built as API Gateway builds them;
* :mod:`.cloudformation`: just enough CloudFormation to read and evaluate ``template.yaml``;
* :mod:`.emulator`: API Gateway's routing and JWT authorizer in front of a pool of Lambda runtimes.
"""
