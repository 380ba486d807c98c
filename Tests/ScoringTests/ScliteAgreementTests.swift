import Foundation
import Testing
import TestSupport
@testable import Scoring

/// Scores a generated corpus with NIST sclite (package sctk) and with Scoring, and requires the same
/// counts per utterance and in total.
@Suite struct ScliteAgreementTests {
    /// ~200 pairs: random references (some empty) and hypotheses made by random substitutions,
    /// deletions and insertions (some empty, some unrelated).
    static func corpus() -> [(reference: String, hypothesis: String)] {
        var rng = SeededGenerator(state: 2024)
        let words = ["a", "the", "cat", "sat", "on", "mat", "it's", "dog", "ran", "far", "away", "x", "up"]
        var pairs: [(reference: String, hypothesis: String)] = []
        for i in 0..<200 {
            let n = i % 17 == 0 ? 0 : Int.random(in: 1...12, using: &rng)
            let ref = (0..<n).map { _ in words.randomElement(using: &rng)! }
            var hyp: [String] = []
            switch i % 23 {
            case 3: hyp = []
            case 5: hyp = (0..<Int.random(in: 1...6, using: &rng)).map { _ in words.randomElement(using: &rng)! }
            default:
                for w in ref {
                    let r = Double.random(in: 0..<1, using: &rng)
                    if r < 0.12 { continue }
                    if r < 0.27 { hyp.append(words.randomElement(using: &rng)!) } else { hyp.append(w) }
                    if Double.random(in: 0..<1, using: &rng) < 0.1 { hyp.append(words.randomElement(using: &rng)!) }
                }
                if Double.random(in: 0..<1, using: &rng) < 0.1 { hyp.insert(words.randomElement(using: &rng)!, at: 0) }
            }
            pairs.append((ref.joined(separator: " "), hyp.joined(separator: " ")))
        }
        return pairs
    }

    struct ScliteResult {
        var perUtterance: [String: ErrorCounts] = [:]
        var total = ErrorCounts()
        var errorPercent: Double = 0
    }

    /// Runs sclite with `rsum` (counts), `sum` (percentages) and `pralign` (per-utterance scores).
    static func runSclite(_ sclite: String, refs: [String], hyps: [String], characters: Bool, utf8: Bool = false) throws -> ScliteResult {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-sclite-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ref = dir.appendingPathComponent("ref.trn"), hyp = dir.appendingPathComponent("hyp.trn")
        try SCLiteExport.write(references: refs, hypotheses: hyps, referenceURL: ref, hypothesisURL: hyp)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: sclite)
        p.arguments = ["-r", ref.path, "trn", "-h", hyp.path, "trn", "-i", "spu_id"] + (characters ? ["-c"] : []) + (utf8 ? ["-e", "utf-8"] : [])
            + ["-o", "sum", "rsum", "pralign", "stdout"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let out = String(decoding: data, as: UTF8.self)
        var result = ScliteResult()
        var currentID: String? = nil
        var sawSum = false
        for line in out.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "|" || $0 == "," }).map(String.init)
            if line.hasPrefix("id: (") {
                currentID = String(line.dropFirst(5).dropLast())
            } else if line.hasPrefix("Scores: (#C #S #D #I)"), let id = currentID {
                let n = fields.suffix(4).compactMap { Int($0) }
                result.perUtterance[id] = ErrorCounts(hits: n[0], substitutions: n[1], deletions: n[2], insertions: n[3])
            } else if fields.first == "Sum", fields.count == 9 {
                // rsum:  | Sum | #Snt #Wrd | Corr Sub Del Ins Err S.Err |
                let n = fields[1...].compactMap { Int($0) }
                if n.count == 8 {
                    result.total = ErrorCounts(hits: n[2], substitutions: n[3], deletions: n[4], insertions: n[5])
                    sawSum = true
                }
            } else if fields.first == "Sum/Avg", fields.count == 9 {
                // sum:   | Sum/Avg | #Snt #Wrd | Corr% Sub% Del% Ins% Err% S.Err% |
                result.errorPercent = Double(fields[7]) ?? -1
            }
        }
        guard sawSum else { throw ManifestError.unreadable(file: sclite, reason: "no Sum line in sclite output:\n\(out)") }
        return result
    }

    func compare(characters: Bool) throws {
        let sclite = try sclitePath()
        let pairs = Self.corpus()
        #expect(pairs.contains { $0.reference.isEmpty } && pairs.contains { $0.hypothesis.isEmpty })
        let truth = try Self.runSclite(sclite, refs: pairs.map(\.reference), hyps: pairs.map(\.hypothesis), characters: characters)
        var ours = ErrorCounts()
        for (i, p) in pairs.enumerated() {
            let c = characters ? ErrorRate.characters(reference: p.reference, hypothesis: p.hypothesis)
                : ErrorRate.words(reference: p.reference, hypothesis: p.hypothesis)
            ours += c
            #expect(truth.perUtterance[SCLiteExport.utteranceID(i)] == c, "utterance \(i): '\(p.reference)' vs '\(p.hypothesis)'")
        }
        #expect(truth.perUtterance.count == pairs.count)
        #expect(ours == truth.total)
        #expect(ours.errors > 100 && ours.substitutions > 0 && ours.deletions > 0 && ours.insertions > 0)
        // sclite prints one decimal.
        #expect(format1(100 * ours.rate) == String(format: "%.1f", truth.errorPercent))
    }

    @Test func corpusWordErrorCountsEqualSclites() throws { try compare(characters: false) }

    @Test func corpusCharacterErrorCountsEqualScliteDashC() throws { try compare(characters: true) }

    /// Beyond a-z: accented letters, precomposed and decomposed, and other scripts count code points.
    @Test func nonASCIICharacterErrorsCountCodePointsAsScliteDashCDashEUTF8() throws {
        let sclite = try sclitePath()
        let pairs: [(reference: String, hypothesis: String)] = [
            ("Café naïve", "cafe naive"),
            ("cafe\u{301} x", "cafe x"),
            ("Straße über", "strasse uber"),
            ("日本語 テスト", "日本 テキスト"),
            ("ça va", "ça va"),
        ]
        let truth = try Self.runSclite(sclite, refs: pairs.map(\.reference), hyps: pairs.map(\.hypothesis), characters: true, utf8: true)
        var ours = ErrorCounts()
        for (i, p) in pairs.enumerated() {
            let c = ErrorRate.characters(reference: p.reference, hypothesis: p.hypothesis)
            ours += c
            #expect(truth.perUtterance[SCLiteExport.utteranceID(i)] == c, "utterance \(i): '\(p.reference)' vs '\(p.hypothesis)'")
        }
        #expect(ours == truth.total)
        // The decomposed é is two code points, the second deleted.
        #expect(ErrorRate.characters(reference: "cafe\u{301}", hypothesis: "cafe") == ErrorCounts(hits: 4, deletions: 1))
    }
}
