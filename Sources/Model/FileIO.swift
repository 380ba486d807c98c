import Tensors

// Model files read and written through Tensors' file I/O, with the failure as a `ModelError`.

func readFile(_ path: String) throws(ModelError) -> [UInt8] {
    do { return try readRegularFile(path) } catch { throw .unreadable(file: path, reason: error.reason) }
}

func writeFileAtomically(_ bytes: [UInt8], to path: String) throws(ModelError) {
    do { try Tensors.writeFileAtomically(bytes, to: path) } catch { throw .unwritable(file: path, reason: error.reason) }
}
