// The Recognizer stage; see docs/architecture.md.
