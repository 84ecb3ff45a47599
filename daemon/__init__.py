"""The TensorFlow side: VGG-19 model, style-transfer engine, daemon server and CLI."""
