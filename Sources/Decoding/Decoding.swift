// The Decoding stage; see docs/architecture.md.
