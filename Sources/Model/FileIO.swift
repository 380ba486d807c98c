import Tensors

// Model files read and written through Tensors' file I/O, with the failure as a `ModelError`.

func readFile(_ path: String) throws(ModelError) -> [UInt8] {
    do { return try readRegularFile(path) } catch { throw .unreadable(file: path, reason: error.reason) }
}

/// Reads a safetensors file whole, after checking its first bytes: a header length that no safetensors
/// file has (a WAV's "RIFF", a text file) or a header that does not open a JSON object is refused
/// before a large file given by mistake is read.
func readSafeTensorsFile(_ path: String) throws(ModelError) -> [UInt8] {
    let prefix: [UInt8], size: Int
    do { (prefix, size) = try readRegularFilePrefix(path, count: 9) } catch { throw .unreadable(file: path, reason: error.reason) }
    if prefix.count == 9 {
        // The same checks, in the same order and words, as `SafeTensors.decode` makes on the whole file.
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(prefix[i]) << (8 * UInt64(i)) }
        guard n <= UInt64(size - 8) else {
            throw .truncated(file: path, reason: "header length \(n) exceeds the \(size - 8) bytes after it (is this a safetensors file?)")
        }
        guard n <= UInt64(SafeTensors.maxHeaderBytes) else {
            throw .malformedHeader(file: path, reason: "header length \(n) is larger than the \(SafeTensors.maxHeaderBytes)-byte limit (is this a safetensors file?)")
        }
        guard prefix[8] == UInt8(ascii: "{") else {
            throw .malformedHeader(file: path, reason: "the header does not start with '{' (is this a safetensors file?)")
        }
    }
    return try readFile(path)
}

func writeFileAtomically(_ bytes: [UInt8], to path: String) throws(ModelError) {
    do { try Tensors.writeFileAtomically(bytes, to: path) } catch { throw .unwritable(file: path, reason: error.reason) }
}
