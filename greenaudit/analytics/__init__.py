"""Pure analytics: arrays in, numbers or result dataclasses out, no I/O."""
