import Foundation
import Tensors

/// The compact binary form of an n-gram model (`earshot lm compile`): the frozen trie of
/// `NGramTable` as flat little-endian arrays, so loading is a read and a few copies instead of
/// parsing text and filling hash tables. Pocketsphinx's general English LM (3.8 million n-grams) loads in
/// about a tenth of a second from it, against two seconds and three times the memory from ARPA.
///
/// Layout (all integers and floats little-endian):
///
///     magic            "EARSHOT-LM" 0x00 0x01      (12 bytes; the last byte is the format version)
///     order            UInt32
///     counts           UInt64 x order             (entries per order, placeholders included)
///     wordBytes        UInt64
///     words            wordBytes of UTF-8, each word followed by "\n"; a word's id is its position
///     per order n = 1 ... order:
///         logProb      Float32 x counts[n]        (log10; placeholders -99)
///         backoff      Float32 x counts[n]        (only for n < order)
///         present      UInt8 x counts[n]          (1, or 0 for a placeholder prefix)
///         word         Int32 x counts[n]          (only for n >= 2; sorted within each context)
///         childStart   Int32 x (counts[n-1] + 1)  (only for n >= 2; see `NGramTable.childStart`)
///
/// Everything is checked on load (sizes, ids, order within each context, finite values), so a truncated,
/// foreign or structurally damaged file is an error naming it, never a crash or an out-of-bounds lookup
/// (a damaged value that is still a finite number loads: there is no checksum).
extension NGramLanguageModel {
    static let binaryMagic: [UInt8] = Array("EARSHOT-LM".utf8) + [0, 1]
    /// Highest order the binary format takes (a sanity bound for the reader; real models are 2-5).
    static let maxBinaryOrder = 16

    /// Whether `bytes` start like a binary model (of any format version).
    static func looksBinary(_ bytes: [UInt8]) -> Bool {
        bytes.count >= binaryMagic.count - 1 && Array(bytes[0..<(binaryMagic.count - 1)]) == Array(binaryMagic.dropLast())
    }

    /// Whether the file at `url` is a regular file that starts like a binary model (false if it cannot be
    /// read; the loader that follows then reports why). Opened with O_NONBLOCK, so a FIFO does not wait.
    public static func isBinaryFile(_ url: URL) -> Bool {
        let fd = open(url.path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        var head = [UInt8](repeating: 0, count: binaryMagic.count)
        let n = head.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        return n == head.count && looksBinary(head)
    }

    /// Loads a language model file in either format: binary (`writeBinary`) or ARPA text, told apart by
    /// the binary magic.
    public init(file url: URL) throws {
        let bytes = try Self.readBytes(url)
        if Self.looksBinary(bytes) {
            try self.init(binaryBytes: bytes, name: url.path)
        } else {
            try self.init(arpaBytes: bytes, name: url.path)
        }
    }

    /// The whole file, or an error naming it (a FIFO or other non-regular file is refused at once).
    static func readBytes(_ url: URL) throws(LanguageModelError) -> [UInt8] {
        do { return try readRegularFile(url.path) } catch { throw .unreadable(file: url.path, reason: error.reason) }
    }

    /// Loads a binary model (`writeBinary`). The file is read whole rather than mapped: a mapped file
    /// overwritten in place (`cp` over it) while loading would kill the process with SIGBUS.
    public init(binaryFile url: URL) throws {
        try self.init(binaryBytes: try Self.readBytes(url), name: url.path)
    }

    init(binaryBytes bytes: UnsafeRawBufferPointer, name: String) throws {
        var reader = BinaryReader(bytes: bytes, name: name)
        self = try reader.read()
    }

    init(binaryBytes bytes: [UInt8], name: String) throws {
        self = try bytes.withUnsafeBytes { try NGramLanguageModel(binaryBytes: $0, name: name) }
    }

    /// The model in the binary format.
    public func binaryBytes() -> [UInt8] {
        var model = self
        model.freeze()
        var out = Self.binaryMagic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func put<T: BitwiseCopyable>(array: [T]) {
            // The host is little-endian (checked by `BinaryReader`'s counterpart at load; every platform
            // Swift runs Earshot on is), so arrays are written as they lie in memory.
            array.withUnsafeBytes { out.append(contentsOf: $0) }
        }
        put(UInt32(order))
        for t in model.tables { put(UInt64(t.count)) }
        var wordBytes: [UInt8] = []
        for w in model.words { wordBytes.append(contentsOf: w.utf8); wordBytes.append(10) }
        put(UInt64(wordBytes.count))
        out.append(contentsOf: wordBytes)
        for n in 1...order {
            let t = model.tables[n - 1]
            put(array: t.logProb)
            if n < order { put(array: t.backoff) }
            put(array: t.present.map { UInt8($0 ? 1 : 0) })
            if n >= 2 {
                put(array: t.word)
                put(array: t.childStart)
            }
        }
        return out
    }

    /// Writes the binary form to `url` atomically (temporary file, fsync, rename).
    public func writeBinary(to url: URL) throws {
        guard order <= Self.maxBinaryOrder else {
            throw LanguageModelError.unwritable(file: url.path, reason: "order \(order): the binary format holds orders up to \(Self.maxBinaryOrder)")
        }
        do { try writeFileAtomically(binaryBytes(), to: url.path) } catch {
            throw LanguageModelError.unwritable(file: url.path, reason: error.reason)
        }
    }
}

/// Reads and checks the binary layout described on `NGramLanguageModel.binaryBytes`.
private struct BinaryReader {
    let bytes: UnsafeRawBufferPointer
    let name: String
    var position = 0

    init(bytes: UnsafeRawBufferPointer, name: String) {
        self.bytes = bytes
        self.name = name
    }

    func damaged(_ reason: String) -> LanguageModelError {
        .unreadable(file: name, reason: "damaged binary language model: \(reason)")
    }

    mutating func take(_ count: Int, _ what: String) throws -> Range<Int> {
        guard count >= 0, count <= bytes.count - position else {
            throw damaged("the file ends inside the \(what) (\(bytes.count) bytes)")
        }
        defer { position += count }
        return position..<(position + count)
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
        let r = try take(MemoryLayout<T>.size, what)
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: r.lowerBound, as: T.self))
    }

    mutating func array<T: BitwiseCopyable>(_: T.Type, count: Int, _ what: String) throws -> [T] {
        let (size, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow else { throw damaged("the \(what) count \(count) is impossible") }
        let r = try take(size, what)
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[r]))
            initialized = count
        }
    }

    mutating func read() throws -> NGramLanguageModel {
        let magic = NGramLanguageModel.binaryMagic
        guard bytes.count >= magic.count, NGramLanguageModel.looksBinary(Array(bytes.prefix(magic.count))) else {
            throw LanguageModelError.unreadable(file: name, reason: "not a binary Earshot language model (no EARSHOT-LM header)")
        }
        guard bytes[magic.count - 1] == magic.last! else {
            throw LanguageModelError.unreadable(file: name, reason: "binary language model format version \(bytes[magic.count - 1]); this earshot reads version \(magic.last!) (recompile it with `earshot lm compile`)")
        }
        guard 1.littleEndian == 1 else {
            throw LanguageModelError.unreadable(file: name, reason: "binary language models are little-endian and this machine is not; use the ARPA file")
        }
        position = magic.count
        let order = Int(try integer(UInt32.self, "header"))
        guard (1...NGramLanguageModel.maxBinaryOrder).contains(order) else { throw damaged("order \(order)") }
        var counts: [Int] = []
        for n in 1...order {
            let c = try integer(UInt64.self, "header")
            // Every entry takes at least 5 bytes, so a count beyond the file's size is damage, not a
            // reason to reserve memory.
            guard c <= UInt64(bytes.count), c < UInt64(Int32.max) else { throw damaged("\(c) \(n)-grams in a file of \(bytes.count) bytes") }
            counts.append(Int(c))
        }
        let wordBytes = try integer(UInt64.self, "header")
        guard wordBytes <= UInt64(bytes.count) else { throw damaged("a word list of \(wordBytes) bytes") }
        let wordRange = try take(Int(wordBytes), "word list")
        // Each word takes at least two bytes (a character and "\n"): checked before reserving room for them.
        guard counts[0] <= wordRange.count / 2 else {
            throw damaged("\(counts[0]) words in a word list of \(wordRange.count) bytes")
        }

        var model = NGramLanguageModel(order: order)
        model.words.reserveCapacity(counts[0])
        model.wordIDs.reserveCapacity(counts[0])
        var start = wordRange.lowerBound
        for i in wordRange where bytes[i] == 10 {
            guard i > start, let word = String(validating: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self) else {
                throw damaged("word \(model.words.count) is empty or not UTF-8")
            }
            guard model.wordIDs[word] == nil else { throw damaged("the word '\(word)' is listed twice") }
            _ = model.addWord(word)
            start = i + 1
        }
        guard start == wordRange.upperBound, model.words.count == counts[0] else {
            throw damaged("the word list has \(model.words.count) words, the header says \(counts[0])")
        }
        let wordCount = Int32(counts[0])

        for n in 1...order {
            let count = counts[n - 1]
            var t = NGramTable()
            t.logProb = try array(Float.self, count: count, "\(n)-gram probabilities")
            guard t.logProb.allSatisfy({ $0.isFinite && $0 <= 0 }) else { throw damaged("a \(n)-gram probability is not a log10 value") }
            t.backoff = n < order ? try array(Float.self, count: count, "\(n)-gram back-offs") : []
            guard t.backoff.allSatisfy(\.isFinite) else { throw damaged("a \(n)-gram back-off is not finite") }
            let present = try array(UInt8.self, count: count, "\(n)-gram flags")
            guard present.allSatisfy({ $0 <= 1 }) else { throw damaged("a \(n)-gram flag is neither 0 nor 1") }
            t.present = present.map { $0 == 1 }
            if n == 1 {
                t.word = (0..<wordCount).map { $0 }
            } else {
                t.word = try array(Int32.self, count: count, "\(n)-gram words")
                t.childStart = try array(Int32.self, count: counts[n - 2] + 1, "\(n)-gram index")
                try checkIndex(of: t, order: n, wordCount: wordCount)
            }
            model.tables[n - 1] = t
        }
        guard position == bytes.count else { throw damaged("\(bytes.count - position) bytes after the last table") }
        return model
    }

    /// Checks that `childStart`'s ranges tile the table and that words are valid and strictly increasing
    /// within each range (which bisection relies on).
    func checkIndex(of t: NGramTable, order n: Int, wordCount: Int32) throws {
        let starts = t.childStart
        guard starts.first == 0, starts.last == Int32(t.count) else { throw damaged("the \(n)-gram index does not cover the table") }
        for c in 0..<(starts.count - 1) {
            let lo = Int(starts[c]), hi = Int(starts[c + 1])
            guard lo <= hi, hi <= t.count else { throw damaged("the \(n)-gram index is out of order or past the table at context \(c)") }
            var previous: Int32 = -1
            for i in lo..<hi {
                let w = t.word[i]
                guard w > previous, w < wordCount else { throw damaged("\(n)-gram \(i) has word id \(w) out of order or range") }
                previous = w
            }
        }
    }
}
