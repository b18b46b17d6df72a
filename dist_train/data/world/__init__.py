"""The built-in benchmark: rendered scenes captioned in many languages, with a known answer."""
