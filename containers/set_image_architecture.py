"""Relabel a local image's architecture: ``set_image_architecture.py IMAGE ARCH``.

``docker import`` writes the engine's own architecture into every image it makes, and Docker 20.10's
``--platform`` flag doesn't change that, so an arm64 root filesystem would be labelled amd64 and
``docker build --platform linux/arm64`` would refuse it. This rewrites the architecture in the image's
config (``docker save``, edit, ``docker load``); the layers are untouched.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile


def relabel(image: str, architecture: str) -> None:
    saved = subprocess.run(["docker", "save", image], check=True, capture_output=True).stdout  # noqa: S603, S607
    source = tarfile.open(fileobj=io.BytesIO(saved))
    manifest = json.loads(source.extractfile("manifest.json").read())  # type: ignore[union-attr]
    config_name = manifest[0]["Config"]
    config = json.loads(source.extractfile(config_name).read())  # type: ignore[union-attr]
    if config.get("architecture") == architecture:
        return
    config["architecture"] = architecture
    if architecture == "arm64":
        config["variant"] = "v8"
    new_config = json.dumps(config).encode()
    new_config_name = hashlib.sha256(new_config).hexdigest() + ".json"
    manifest[0]["Config"] = new_config_name
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as target:
        for member in source.getmembers():
            if member.name in ("manifest.json", config_name):
                continue
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        for name, data in ((new_config_name, new_config), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    subprocess.run(["docker", "load", "-q"], input=out.getvalue(), check=True, capture_output=True)  # noqa: S603, S607


if __name__ == "__main__":
    relabel(sys.argv[1], sys.argv[2])
