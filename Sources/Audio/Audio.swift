// The Audio stage; see docs/architecture.md.
