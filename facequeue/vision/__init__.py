"""The face engine: DeepFace/dlib set-up, per-image analysis, attributes, recognition index."""
