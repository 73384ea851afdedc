"""The adversarial proof suite: fuzzed parsers, faults on the wire, kill -9 during
cache writes and a secret canary. Writes docs/RELIABILITY.md at the end of a run."""
