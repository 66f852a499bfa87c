"""Media I/O: audio decoding (``audio``), the mel spectrogram (``mel``) and the MP4 writer (``video``)."""
