# syntax=docker/dockerfile:1
# The inference function's image. `sam build` builds it for the function's Architectures (x86_64 or arm64):
# the base image is a multi-arch manifest, and every dependency below installs from manylinux wheels.
#
# python:3.12 because its base is Amazon Linux 2023 (glibc 2.34); python:3.11's is Amazon Linux 2, whose
# glibc 2.26 is older than today's onnxruntime and numpy wheels need (>= 2.28).
#
# Lambda runs the image as its own unprivileged sandbox user and never runs a HEALTHCHECK, so neither
# applies here:
# checkov:skip=CKV_DOCKER_2: Lambda ignores HEALTHCHECK; its runtime API reports function health.
# checkov:skip=CKV_DOCKER_3: Lambda runs the container as a non-root sandbox user whatever USER says.
FROM public.ecr.aws/lambda/python:3.12

# Runtime dependencies only (pyproject's [project].dependencies, no extras), in their own layer, so a
# code change rebuilds only the small layer below. They go into the image's own site-packages, where the
# base image's boto3 and botocore already satisfy the requirements on them: no second copy of botocore
# (over 80 MB). Wheels only: the image has no compiler, and a source build must fail the build.
# Exact pins with hashes are the lock file's job (see the reliability issue); this follows pyproject.
COPY pyproject.toml /tmp/build/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/build/requirements.txt \
    && pip install --no-cache-dir --only-binary=:all: -r /tmp/build/requirements.txt \
    && rm -rf /tmp/build

# The service package. /var/task is read-only at run time, so compile the bytecode now rather than on
# every cold start.
COPY src/onnx_lambda "${LAMBDA_TASK_ROOT}/onnx_lambda"
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}/onnx_lambda"

CMD ["onnx_lambda.handler.lambda_handler"]
