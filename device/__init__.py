"""The Hairmirror daemon and everything that runs on the Pi (numpy, OpenCV, onnxruntime, Flask; never torch)."""
