"""Pure serving runtime (no Django): predictions from a trained zoo model and its ONNX export."""
