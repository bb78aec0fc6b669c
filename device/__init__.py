"""The Hairmirror daemon and everything that runs on the Pi (numpy, OpenCV, onnxruntime, Flask; never torch).

Image sizes are (height, width), as numpy shapes are, and named so: `hw`, `*_hw`, `shape`, and the ONNX contract's
`input_size` ("H,W"). (width, height) appears only at the OpenCV and Picamera2 calls that take it, named `wh`.
"""
