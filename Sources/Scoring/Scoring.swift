// The Scoring stage; see docs/architecture.md.
