import Foundation
import Testing
@testable import Scoring

@Suite struct TextNormalizerTests {
    @Test func lowercasesKeepsApostrophesAndTurnsPunctuationIntoSpaces() {
        let n = TextNormalizer()
        #expect(n.normalize("  Hello, World!  It’s  state-of-the-art.\tOK?\n") == "hello world it's state of the art ok")
        #expect(n.normalize("R2-D2 costs $100") == "r2 d2 costs 100")
        #expect(n.normalize("...") == "")
        #expect(n.words("Don't stop") == ["don't", "stop"])
        #expect(TextNormalizer(lowercase: false).normalize("Hi there") == "Hi there")
    }

    /// Quotation marks are not part of words: He said 'yes' scored one substitution against "he said
    /// yes". Apostrophes count only inside a word; stand-ins for them (´ and `) count as apostrophes.
    @Test func apostrophesCountOnlyInsideWords() {
        let n = TextNormalizer()
        #expect(n.normalize("He said 'yes', ‘no’ and \"maybe\"") == "he said yes no and maybe")
        #expect(n.normalize("the students' books, 'em, ''tis'' and ' alone") == "the students books em tis and alone")
        #expect(n.normalize("don´t won`t it’s rock'n'roll") == "don't won't it's rock'n'roll")
        #expect(ErrorRate.words(reference: "He said 'yes'.", hypothesis: "he said yes").errors == 0)
        #expect(TextNormalizer(keepApostrophes: false).words("don't 'x'") == ["don", "t", "x"])
    }
}

@Suite struct ErrorRateTests {
    @Test func countsSubstitutionsDeletionsAndInsertions() {
        let c = ErrorRate.words(reference: "the cat sat on the mat", hypothesis: "the bat sat the mat today")
        #expect(c == ErrorCounts(hits: 4, substitutions: 1, deletions: 1, insertions: 1))
        #expect(c.referenceLength == 6 && c.errors == 3)
        #expect(abs(c.rate - 0.5) < 1e-12)
    }

    @Test func emptySidesAreAllDeletionsOrAllInsertions() {
        #expect(ErrorRate.words(reference: "a b c", hypothesis: "") == ErrorCounts(deletions: 3))
        #expect(ErrorRate.words(reference: "", hypothesis: "x y") == ErrorCounts(insertions: 2))
        #expect(ErrorRate.words(reference: "", hypothesis: "").rate == 0)
        #expect(ErrorRate.words(reference: "", hypothesis: "x").rate == .infinity)
    }

    @Test func prefersDeletionPlusInsertionsWhenCheaperWithSclitesCosts() {
        // Plain Levenshtein could call this 2 substitutions + 1 insertion; sclite's 4/3/3 costs pick
        // one deletion and two insertions (cost 9 < 11).
        let ops = ErrorRate.align(reference: ["a", "b", "c"], hypothesis: ["a", "c", "d", "e"])
        #expect(ops == [.correct("a"), .deletion("b"), .correct("c"), .insertion("d"), .insertion("e")])
    }

    @Test func characterErrorsIgnoreSpacesLikeScliteDashC() {
        #expect(ErrorRate.characters(reference: "ab cd", hypothesis: "abcd") == ErrorCounts(hits: 4))
        #expect(ErrorRate.characters(reference: "ab cd", hypothesis: "abcd", includeSpaces: true) == ErrorCounts(hits: 4, deletions: 1))
        #expect(ErrorRate.characters(reference: "cat", hypothesis: "bat") == ErrorCounts(hits: 2, substitutions: 1))
    }

    @Test func corpusRateIsTotalErrorsOverTotalReferenceWords() {
        let s = CorpusScore(pairs: [(reference: "a b c d", hypothesis: "a b c d"), (reference: "e", hypothesis: "f g")])
        #expect(s.words == ErrorCounts(hits: 4, substitutions: 1, insertions: 1))
        #expect(abs(s.wordErrorRatePercent - 40) < 1e-9)
        #expect(s.utterances == 2 && s.utterancesWithErrors == 1)
    }
}

@Suite struct ManifestTests {
    let base = URL(fileURLWithPath: "/data/set")

    @Test func parsesEntriesSkippingCommentsAndBlankLines() throws {
        let text = "# test set\n\nclips/a.wav\tHello there\r\n  # indented comment\n/abs/b.flac\t\nc.wav\tit's fine\n"
        let m = try Manifest.parse(text, name: "m.tsv", baseDirectory: base)
        #expect(m.entries == [.init(path: "clips/a.wav", text: "Hello there"), .init(path: "/abs/b.flac", text: ""),
                              .init(path: "c.wav", text: "it's fine")])
        #expect(m.url(of: m.entries[0]).path == "/data/set/clips/a.wav")
        #expect(m.url(of: m.entries[1]).path == "/abs/b.flac")
        let again = try Manifest.parse(m.serialized(), name: "m.tsv", baseDirectory: base)
        #expect(again == m)
    }

    @Test func malformedLinesAreTypedErrorsWithLineNumbers() {
        #expect(throws: ManifestError.malformedLine(file: "m.tsv", line: 3, reason: "expected 'audio_path<TAB>text', found no tab")) {
            try Manifest.parse("# c\na.wav\thi\nb.wav hi\n", name: "m.tsv", baseDirectory: base)
        }
        #expect(throws: ManifestError.malformedLine(file: "m.tsv", line: 1, reason: "expected 'audio_path<TAB>text', found 2 tabs")) {
            try Manifest.parse("a.wav\thi\tthere\n", name: "m.tsv", baseDirectory: base)
        }
        #expect(throws: ManifestError.malformedLine(file: "m.tsv", line: 2, reason: "empty audio path")) {
            try Manifest.parse("a.wav\thi\n\thello\n", name: "m.tsv", baseDirectory: base)
        }
        #expect(ManifestError.malformedLine(file: "m.tsv", line: 2, reason: "x").description == "m.tsv:2: x")
    }

    @Test func readsAndWritesFilesRelativeToTheirFolder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("earshot-manifest-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("hyp.tsv")
        let m = Manifest(entries: [.init(path: "x.wav", text: "one\ttwo")], baseDirectory: dir)
        try m.write(to: url)
        let back = try Manifest.read(from: url)
        #expect(back.entries == [.init(path: "x.wav", text: "one two")])
        #expect(back.url(of: back.entries[0]) == dir.appendingPathComponent("x.wav"))
        #expect(throws: ManifestError.self) { try Manifest.read(from: dir.appendingPathComponent("missing.tsv")) }
    }

    @Test func trnLinesCarryNormalisedTextAndTheUtteranceID() {
        #expect(SCLiteExport.utteranceID(7) == "earshot-000007")
        #expect(SCLiteExport.trn([(id: "earshot-000001", text: "Hello, World"), (id: "earshot-000002", text: "")])
                == "hello world (earshot-000001)\n (earshot-000002)\n")
    }
}
