#!/usr/bin/env bash
# Build the local stand-ins for the AWS images that cannot be pulled here, for one architecture:
#   onnx-lambda-standin/rootfs:trixie-<arch>            Debian trixie (Python 3.13), packages from debootstrap
#   onnx-lambda-standin/lambda-python:3.13-<arch>       like public.ecr.aws/lambda/python:3.13
#   onnx-lambda-standin/sam-build-python:3.13-<arch>    like public.ecr.aws/sam/build-python3.13 (host only)
# For the host's architecture, the Lambda stand-in is also tagged public.ecr.aws/lambda/python:3.13, the
# Dockerfile's default base, so that `sam build` (which cannot pass build arguments) builds on it; an
# image of that name that is not a stand-in (a real pull) is never replaced.
# Usage: containers/build-standins.sh [x86_64|arm64]. Needs root (debootstrap) and Docker.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-x86_64}
SAM_PYTHON=${SAM_PYTHON:-.venv-sam/bin/python}
WORK=build/standins/$ARCH
case "$ARCH" in
    x86_64) DEB_ARCH=amd64 ;;
    arm64) DEB_ARCH=arm64 ;;
    *) echo "build-standins: unknown architecture $ARCH (x86_64 or arm64)" >&2; exit 2 ;;
esac
ROOTFS_IMAGE=onnx-lambda-standin/rootfs:trixie-$ARCH
LAMBDA_IMAGE=onnx-lambda-standin/lambda-python:3.13-$ARCH
BUILD_IMAGE=onnx-lambda-standin/sam-build-python:3.13-$ARCH
AWS_BASE=public.ecr.aws/lambda/python:3.13
export DOCKER_BUILDKIT=0  # the legacy builder: BuildKit would try to pull its frontend

scripts/docker-up.sh
need() {  # a Debian package, installed if its command is missing (refreshing apt's lists if they are stale)
    command -v "$1" >/dev/null 2>&1 && return
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 \
        || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }
}
host_arch=$(uname -m)
[ "$host_arch" = aarch64 ] && host_arch=arm64

debian_mirror() {  # the host's own Debian mirror, as its apt sources name it
    local mirror
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    echo "$mirror"
}

if [ "$ARCH" != "$host_arch" ]; then
    # Another architecture's binaries run through QEMU user emulation, registered with binfmt_misc. It
    # takes QEMU 10 (Debian trixie's qemu-user, a static binary): bookworm's 7.2 deadlocks in
    # `import onnxruntime`. apt fetches the package from trixie through a private sources list, so the
    # host's own apt configuration is untouched; the binary is registered under its own name, and an
    # older registration of the same format is switched off.
    qemu=build/qemu/qemu-aarch64
    if [ ! -x "$qemu" ]; then
        apt_dir=$(mktemp -d)
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main" >"$apt_dir/sources.list"
        apt_options=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o Dir::Etc::sourceparts=- \
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::archives=$apt_dir/archives" -o APT::Sandbox::User=root)
        apt-get "${apt_options[@]}" update -qq
        (cd "$apt_dir" && apt-get "${apt_options[@]}" download qemu-user 2>/dev/null)
        dpkg-deb -x "$apt_dir"/qemu-user_*.deb "$apt_dir/extract"
        mkdir -p build/qemu && cp "$apt_dir/extract/usr/bin/qemu-aarch64" "$qemu"
        rm -rf "$apt_dir"
    fi
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && echo 0 >/proc/sys/fs/binfmt_misc/qemu-aarch64
    entry=/proc/sys/fs/binfmt_misc/onnx-lambda-aarch64
    [ -e "$entry" ] && echo -1 >"$entry"
    # ELF, 64-bit, little-endian, machine 0xb7 (aarch64); F opens the interpreter now, so containers use it.
    printf '%s' ":onnx-lambda-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:$(realpath "$qemu"):PF" \
        >/proc/sys/fs/binfmt_misc/register \
        || { echo "build-standins: could not register QEMU with binfmt_misc" >&2; exit 1; }
fi

# 1. The root filesystem: Debian trixie's minimal base with its Python 3.13, the same minor as Lambda's.
#    debootstrap resolves and downloads the packages; they are unpacked without running their maintainer
#    scripts, so no step runs the target's binaries (no emulation for arm64, and seconds instead of
#    minutes). What those scripts would make, the stand-in's Dockerfile supplies (the CA bundle).
if ! docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
    need debootstrap debootstrap
    mirror=$(debian_mirror)
    rm -rf "$WORK/download" "$WORK/rootfs" && mkdir -p "$WORK/rootfs"
    echo "build-standins: debootstrap trixie ($DEB_ARCH)" >&2
    debootstrap --download-only --arch="$DEB_ARCH" --variant=minbase \
        --include=python3,python3-venv,ca-certificates trixie "$WORK/download" "$mirror" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
    for deb in "$WORK/download/var/cache/apt/archives/"*.deb; do
        dpkg-deb -x "$deb" "$WORK/rootfs"
    done
    cp "$WORK/rootfs/usr/share/base-passwd/passwd.master" "$WORK/rootfs/etc/passwd"
    cp "$WORK/rootfs/usr/share/base-passwd/group.master" "$WORK/rootfs/etc/group"
    mkdir -p "$WORK/rootfs/tmp" "$WORK/rootfs/etc/ssl/certs" && chmod 1777 "$WORK/rootfs/tmp"
    tar -C "$WORK/rootfs" -c . | docker import - "$ROOTFS_IMAGE" >/dev/null
    rm -rf "$WORK/download" "$WORK/rootfs"
    # `docker import` labels every image with the engine's architecture; give it the right one.
    "$SAM_PYTHON" containers/set_image_architecture.py "$ROOTFS_IMAGE" "$DEB_ARCH"
fi

# 2. The Lambda Python stand-in, with the Runtime Interface Emulator that SAM CLI's wheel ships.
rie=$("$SAM_PYTHON" -c 'import pathlib, samcli; print(pathlib.Path(samcli.__file__).parent / "local/rapid")')/aws-lambda-rie-$ARCH
context=$WORK/lambda-python
rm -rf "$context" && mkdir -p "$context"
cp containers/lambda-python/* "$context/"
cp "$rie" "$context/aws-lambda-rie" && chmod 755 "$context/aws-lambda-rie"
cp /etc/ssl/certs/ca-certificates.crt "$context/ca-certificates.crt"
docker build -q --platform "linux/$DEB_ARCH" --build-arg ROOTFS="$ROOTFS_IMAGE" -t "$LAMBDA_IMAGE" "$context" >/dev/null

# 3. The SAM build stand-in, with the same aws-lambda-builders as the SAM CLI that drives it. The zip
#    functions are pure Python, so one built for the host's architecture serves both.
if [ "$ARCH" = "$host_arch" ]; then
builders=$("$SAM_PYTHON" -c 'import importlib.metadata as m; print(m.version("aws-lambda-builders"))')
docker build -q --platform "linux/$DEB_ARCH" --build-arg BASE="$LAMBDA_IMAGE" \
    --build-arg LAMBDA_BUILDERS_VERSION="$builders" -t "$BUILD_IMAGE" containers/sam-build >/dev/null
fi

if [ "$ARCH" = "$host_arch" ]; then
    if ! docker image inspect "$AWS_BASE" >/dev/null 2>&1 \
        || [ "$(docker image inspect -f '{{index .Config.Labels "org.onnx-lambda.standin"}}' "$AWS_BASE")" = true ]; then
        docker tag "$LAMBDA_IMAGE" "$AWS_BASE"
    fi
fi
echo "build-standins: $LAMBDA_IMAGE ready" >&2
