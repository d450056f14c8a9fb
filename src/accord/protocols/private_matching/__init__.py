"""Private threshold matching: the Apple PSI structure, made fuzzy for PDQ with bit-sampling
bands. See docs/protocol/private-matching.md."""
