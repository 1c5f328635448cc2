"""Network file formats: ``.nnet``, ONNX, ``.npz``; VNNLIB properties."""
