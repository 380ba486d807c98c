// The Features stage; see docs/architecture.md.
