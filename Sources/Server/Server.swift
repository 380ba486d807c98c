// The socket server: protocol codec, sessions, the SwiftNIO server; see docs/protocol.md.
