// The Training stage; see docs/architecture.md.
