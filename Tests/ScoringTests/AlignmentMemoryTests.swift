import Foundation
import Testing
import TestSupport
@testable import Scoring

@Suite struct AlignmentMemoryTests {
    /// The previous full-matrix implementation (cost and back-pointer per cell), kept as the reference
    /// the two-row version must reproduce operation for operation.
    static func referenceAlign(_ reference: [String], _ hypothesis: [String]) -> [AlignmentOperation] {
        let n = reference.count, m = hypothesis.count, w = m + 1
        var cost = [Int](repeating: 0, count: (n + 1) * w)
        var back = [UInt8](repeating: 0, count: (n + 1) * w)
        for b in stride(from: 1, through: m, by: 1) { cost[b] = b * 3; back[b] = 2 }
        for a in stride(from: 1, through: n, by: 1) { cost[a * w] = a * 3; back[a * w] = 1 }
        for a in stride(from: 1, through: n, by: 1) {
            for b in stride(from: 1, through: m, by: 1) {
                let d = cost[(a - 1) * w + b - 1] + (reference[a - 1] == hypothesis[b - 1] ? 0 : 4)
                let del = cost[(a - 1) * w + b] + 3, ins = cost[a * w + b - 1] + 3
                if d <= del && d <= ins { cost[a * w + b] = d; back[a * w + b] = 0 }
                else if del < ins { cost[a * w + b] = del; back[a * w + b] = 1 }
                else { cost[a * w + b] = ins; back[a * w + b] = 2 }
            }
        }
        var ops: [AlignmentOperation] = []
        var a = n, b = m
        while a > 0 || b > 0 {
            switch back[a * w + b] {
            case 0:
                let r = reference[a - 1], h = hypothesis[b - 1]
                ops.append(r == h ? .correct(r) : .substitution(reference: r, hypothesis: h)); a -= 1; b -= 1
            case 1: ops.append(.deletion(reference[a - 1])); a -= 1
            default: ops.append(.insertion(hypothesis[b - 1])); b -= 1
            }
        }
        return ops.reversed()
    }

    @Test func twoRowAlignmentEqualsTheFullMatrixOne() {
        var rng = SeededGenerator(state: 2024)
        func next() -> Int { Int(rng.next() % 1_000_000) }
        for _ in 0..<300 {
            let alphabet = ["a", "b", "c", "d"].prefix(1 + next() % 4)
            let r = (0..<(next() % 12)).map { _ in alphabet[next() % alphabet.count] }
            let h = (0..<(next() % 12)).map { _ in alphabet[next() % alphabet.count] }
            #expect(ErrorRate.align(reference: r, hypothesis: h) == Self.referenceAlign(r, h), "\(r) vs \(h)")
        }
    }

    /// Peak resident memory in bytes since the last `resetPeak()` (Linux: VmHWM).
    static func peakResidentBytes() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
        return try #require(Int(line.split(separator: " ")[1])) * 1024
    }

    static func residentBytes() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        return try #require(Int(line.split(separator: " ")[1])) * 1024
    }

    @Test func longAlignmentNeedsAboutOneBytePerCell() throws {
        // 4000 x 4000 tokens: 16 M cells. One byte each is 16 MB; the former 8-byte cost per cell
        // added 128 MB.
        let n = 4000
        let r = (0..<n).map { ["a", "b", "c"][($0 * 7) % 3] }
        let h = (0..<n).map { ["a", "b", "c"][($0 * 5 + 1) % 3] }
        // Writing 5 to clear_refs resets the process's peak RSS (Linux >= 4.0).
        try "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        let before = try Self.residentBytes()
        let ops = ErrorRate.align(reference: r, hypothesis: h)
        let growth = try Self.peakResidentBytes() - before
        #expect(ErrorRate.counts(ops).referenceLength == n)
        // Cells (16 MB) plus the operation list, plus whatever other tests allocate at the same time:
        // peak RSS is the whole process's, and a full parallel run has added 57 MB (73 MB seen in CI).
        // An 8-byte cost per cell would add 128 MB on top of the cells, so 100 MB still tells them apart.
        #expect(growth < 100 << 20, "peak grew by \(growth >> 20) MB")
    }
}
