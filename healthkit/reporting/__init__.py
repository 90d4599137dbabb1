"""Reports out of an audit: one renderer per format, where they are written, history and the fleet page."""
