# The inference function's image. `sam build` builds it for the function's Architectures (x86_64 or arm64):
# the base image is a multi-arch manifest, and every dependency below installs from manylinux wheels.
#
# python:3.13, on Amazon Linux 2023 (glibc 2.34): today's onnxruntime and numpy wheels need glibc >= 2.28.
# BASE_IMAGE is AWS's image; only the local tests pass a stand-in built from Debian's Python 3.13
# (containers/), on machines that cannot pull from a registry.
#
# Lambda runs the image as its own unprivileged sandbox user and never runs a HEALTHCHECK, so neither
# applies here:
# checkov:skip=CKV_DOCKER_2: Lambda ignores HEALTHCHECK; its runtime API reports function health.
# checkov:skip=CKV_DOCKER_3: Lambda runs the container as a non-root sandbox user whatever USER says.
# checkov:skip=CKV_DOCKER_7: BASE_IMAGE defaults to a versioned tag; only local tests pass a stand-in.
ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.13
FROM ${BASE_IMAGE}

# Runtime dependencies only, in their own layer, so a code change rebuilds only the small layer below.
# requirements/runtime.txt is pyproject's [project].dependencies pinned with the hash of every wheel
# (`make requirements`), for any architecture. It leaves out boto3 and botocore, which the base image
# already has (pinned by the base image itself): no second copy of botocore (over 80 MB), and the
# packages the Makefile's UNUSED_PACKAGES names, hence --no-deps. Wheels only:
# the image has no compiler, and a source build must fail the build.
COPY requirements/runtime.txt /tmp/build/requirements.txt
RUN pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: -r /tmp/build/requirements.txt \
    && rm -rf /tmp/build

# The runtime package and nothing else (.dockerignore keeps the rest of the repository out). /var/task
# is read-only at run time, so compile the bytecode now rather than on every cold start.
COPY src/onnx_lambda "${LAMBDA_TASK_ROOT}/onnx_lambda"
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}/onnx_lambda"

# No pydantic plugin is installed, so don't look for one: pydantic reads every installed package's entry
# points when it builds its first model (3 ms of each cold start, `make bench`'s init stages).
ENV PYDANTIC_DISABLE_PLUGINS=__all__

CMD ["onnx_lambda.handler.lambda_handler"]
