"""Stand-ins for AWS on a laptop, with no account; Docker only where the real image runs.

* :mod:`.cloud`: moto's server on loopback, holding the model bucket and a Cognito user pool;
* :mod:`.lambda_runtime`: the Runtime Interface Emulator in front of ``awslambdaric``, running the image's CMD;
* :mod:`.events`: API Gateway HTTP API events, built as API Gateway builds them;
* :mod:`.cloudformation`: just enough CloudFormation to read and evaluate ``template.yaml``;
* :mod:`.emulator`: API Gateway's routing and JWT authorizer in front of a pool of Lambda runtimes;
* :mod:`.containers`: Docker, the stand-in base images, moto in a container, and Lambda's limits;
* :mod:`.sam_local`: ``sam build``, ``sam local invoke`` and ``sam local start-api`` against the local cloud.
"""
