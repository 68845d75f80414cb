#!/bin/sh
# As in AWS's base images: the image's CMD is the handler. Inside Lambda (or under SAM CLI, whose own
# Runtime Interface Emulator sets AWS_LAMBDA_RUNTIME_API) the runtime client starts directly; under a
# plain `docker run`, the emulator bundled here serves the invoke API on port 8080 in front of it.
if [ $# -ne 1 ]; then
    echo "entrypoint requires the handler name to be the first argument" 1>&2
    exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
    exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap
fi
exec /var/runtime/bootstrap
