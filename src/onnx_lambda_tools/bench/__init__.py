"""``onnx-lambda bench``: every path of the service against its raw reference, on this machine, in one run."""
