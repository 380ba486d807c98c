import Foundation
import Testing
@testable import Tensors

#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileIOTests {
    func scratch(_ name: String) -> String {
        NSTemporaryDirectory() + "/earshot-fileio-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
    }

    /// A file larger than the reader's limit is an error naming its size, not a trap allocating it.
    @Test func aFileOverTheLimitIsRefused() throws {
        let path = scratch("big")
        defer { unlink(path) }
        try writeFileAtomically(Array(repeating: 7, count: 100), to: path)
        #expect(try readRegularFile(path, maxBytes: 100).count == 100)
        #expect {
            _ = try readRegularFile(path, maxBytes: 99)
        } throws: { error in
            "\(error)".contains("100 bytes")
        }
    }

    /// Replacing a file keeps its permissions: a model made private stays private when rewritten.
    @Test func anAtomicWriteKeepsTheReplacedFilesMode() throws {
        let path = scratch("private")
        defer { unlink(path) }
        try writeFileAtomically([1, 2, 3], to: path)
        #expect(chmod(path, 0o600) == 0)
        try writeFileAtomically([4, 5], to: path)
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(try readRegularFile(path) == [4, 5])
    }
}
