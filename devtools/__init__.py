"""Developer tools: the demo, the benches, headless consent, and the one place that points settings at an emulator.

The only floor of the product besides the tests that may import ``emulators``."""
