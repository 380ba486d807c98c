import Audio
import Decoding
import Foundation
import Model
import Recognizer
import Scoring
import Testing
import TestSupport

/// The `earshot` executable as a user runs it: a subprocess on real files, with the shared tiny model.
/// Expected transcripts come from the library (`Recognizer` on the same file), never from literals.
@Suite struct CLITests {
    /// A temporary folder holding the tiny model as a file, plus the model and the binary's path.
    struct Fixture {
        var dir: URL
        var model: URL
        var tiny: EndToEndModel
        var earshot: String

        func run(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
            try runProcess(earshot, arguments, scratch: dir, directory: dir, environment: environment)
        }

        /// What the library says for a file: `earshot transcribe` must print exactly this.
        func expected(_ url: URL) throws -> (transcript: Transcript, duration: Double) {
            let recognizer = try Recognizer(model: tiny.trained)
            let audio = try AudioFile.read(path: url.path, targetSampleRate: recognizer.sampleRate)
            return (recognizer.recognize(audio.samples).transcript, audio.duration)
        }

        /// Synthesises held-out-style renderings (speed 150, pitch 30) of `words` into the fixture.
        func speak(_ words: [String], voice: String = "en-us", pitch: Int = 30) throws -> [URL] {
            try synthesize(words.map { Rendering(text: $0, voice: voice, speed: 150, pitch: pitch) }, into: dir)
        }

        /// Several words with pauses in one file, so subtitles get several cues.
        func sentence(_ words: [String], gap: Double, name: String) throws -> URL {
            let parts = try speak(words).map { try AudioFile.read(path: $0.path, targetSampleRate: 16000).samples }
            let url = dir.appendingPathComponent(name)
            try AudioWriter.write(concatenate(parts, gap: gap), sampleRate: 16000, to: url.path)
            return url
        }
    }

    func withFixture(_ label: String = #function, _ body: (Fixture) throws -> Void) throws {
        let tiny = try EndToEndModel.shared()
        let earshot = try earshotExecutable()
        try withTemporaryDirectory(label) { dir in
            let model = dir.appendingPathComponent("tiny.safetensors")
            try tiny.trained.save(path: model.path)
            try body(Fixture(dir: dir, model: model, tiny: tiny, earshot: earshot))
        }
    }

    /// The non-empty lines of `text`.
    func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    /// A recording quieter than the silence level never reaches the model when split at pauses: the
    /// empty transcript comes with a warning naming the file and the way out, and it is not a failure.
    /// A quiet one above it is raised to the trained level (a quiet recording costs words), and warned
    /// about only when it stays quiet: the gain was limited, or --keep-level kept it.
    @Test func transcribeLevelsQuietRecordingsAndWarnsWhenAFileIsAllBelowTheSilenceLevel() throws {
        try withFixture { f in
            let word = try f.speak(["left"])[0]
            let samples = try AudioFile.read(path: word.path, targetSampleRate: 16000).samples
            let quiet = f.dir.appendingPathComponent("whisper.wav")
            try AudioWriter.write(samples.map { $0 * 1e-3 }, sampleRate: 16000, to: quiet.path)
            let r = try f.run(["transcribe", "--model", f.model.path, quiet.path])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.contains("warning") && r.stderr.contains("whisper.wav") && r.stderr.contains("--whole-file"), "\(r.stderr)")
            let normal = try f.run(["transcribe", "--model", f.model.path, word.path])
            #expect(!normal.stderr.contains("warning"), "\(normal.stderr)")
            let expected = try f.expected(word).transcript.text
            #expect(normal.stdout == expected + "\n")
            // Decoded whole, kept at its level, it is a quiet recording, and says so (without the --whole-file hint).
            let whole = try f.run(["transcribe", "--model", f.model.path, "--whole-file", "--keep-level", quiet.path])
            #expect(whole.stderr.contains("a quiet recording") && whole.stderr.contains("--keep-level") && !whole.stderr.contains("--whole-file"), "\(whole.stderr)")
            // Above the silence level but far below speech: raised to the trained level, with no warning,
            // and recognised as the levelled samples are.
            let soft = f.dir.appendingPathComponent("soft.wav")
            try AudioWriter.write(samples.map { $0 * 0.01 }, sampleRate: 16000, to: soft.path, format: .wavFloat)
            let low = try f.run(["transcribe", "--model", f.model.path, soft.path])
            #expect(low.status == 0 && !low.stderr.contains("warning"), "\(low.stderr)")
            let softSamples = try AudioFile.read(path: soft.path, targetSampleRate: 16000).samples
            let gain = RecordingLevel(samples: softSamples, sampleRate: 16000).gainDB
            #expect(gain > 30)
            let levelled = try Recognizer(model: f.tiny.trained).transcribe(softSamples, splitAtPauses: true, gainDB: gain).transcript.text
            #expect(low.stdout == levelled + "\n", "\(low.stdout)")
            let kept = try f.run(["transcribe", "--model", f.model.path, "--keep-level", soft.path])
            #expect(kept.status == 0 && kept.stderr.contains("soft.wav") && kept.stderr.contains("a quiet recording"), "\(kept.stderr)")
            // So quiet that the largest gain leaves it quiet: raised, decoded, and warned about.
            let faint = f.dir.appendingPathComponent("faint.wav")
            try AudioWriter.write(samples.map { $0 * 1e-5 }, sampleRate: 16000, to: faint.path, format: .wavFloat)
            let far = try f.run(["transcribe", "--model", f.model.path, "--whole-file", faint.path])
            #expect(far.status == 0 && far.stderr.contains("a quiet recording") && far.stderr.contains("raised by \(Int(RecordingLevel.maxGainDB)) dB"), "\(far.stderr)")
        }
    }

    @Test func transcribeReportsBadFilesAndTranscribesTheRest() throws {
        try withFixture { f in
            let good = try f.speak(["yes", "left", "down"])
            let missing = f.dir.appendingPathComponent("missing.wav")
            let corrupt = f.dir.appendingPathComponent("corrupt.wav")
            var rng = SeededGenerator(state: 3)
            try Data((0..<4000).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(to: corrupt)
            let empty = f.dir.appendingPathComponent("empty.wav")
            try Data().write(to: empty)
            let inputs = [good[0], missing, corrupt, good[1], empty, good[2]]
            let r = try f.run(["transcribe", "--model", f.model.path, "--jobs", "2"] + inputs.map(\.path))

            #expect(r.status == 1, "exit status \(r.status), stderr: \(r.stderr)")
            let expectedLines = try good.map { "\($0.path)\t\(try f.expected($0).transcript.text)" }
            #expect(lines(r.stdout) == expectedLines, "stdout:\n\(r.stdout)")
            for (file, reason) in [(missing, "no such file"), (corrupt, "not a supported audio format, or the file is corrupt"),
                                   (empty, "the file is empty (0 bytes)")] {
                let named = r.stderrLines.filter { $0.hasPrefix("earshot: ") && $0.contains("'\(file.path)'") }
                #expect(named.count == 1 && named.allSatisfy { $0.contains(reason) },
                        "stderr should name \(file.lastPathComponent) with '\(reason)':\n\(r.stderr)")
            }
            #expect(r.stderr.contains("3 of 6 files failed"))
        }
    }

    @Test func transcribeJSONHasTimedConfidentWords() throws {
        // The words' key is "word", as in the daemon's finals.
        struct JSONWord: Decodable {
            var word: String
            var start: Double
            var end: Double
            var confidence: Double
        }
        struct Document: Decodable {
            var file: String
            var duration: Double
            var text: String
            var jsonWords: [JSONWord]
            var words: [Word] { jsonWords.map { Word(text: $0.word, start: $0.start, end: $0.end, confidence: $0.confidence) } }
            enum CodingKeys: String, CodingKey { case file, duration, text, jsonWords = "words" }
        }
        try withFixture { f in
            let files = try f.speak(["right", "up"]) + [try f.sentence(["no", "left", "yes"], gap: 0.6, name: "three.wav")]
            // One file: one pretty-printed document. Several: one compact document per line (JSON Lines).
            let single = try f.run(["transcribe", "--model", f.model.path, "--format", "json", files[2].path])
            #expect(single.status == 0, "\(single.stderr)")
            var documents = [try JSONDecoder().decode(Document.self, from: Data(single.stdout.utf8))]
            let several = try f.run(["transcribe", "--model", f.model.path, "--format", "json"] + files.map(\.path))
            #expect(several.status == 0, "\(several.stderr)")
            let jsonLines = lines(several.stdout)
            #expect(jsonLines.count == files.count)
            documents += try jsonLines.map { try JSONDecoder().decode(Document.self, from: Data($0.utf8)) }

            for (doc, file) in zip(documents, [files[2]] + files) {
                let (transcript, duration) = try f.expected(file)
                #expect(doc.file == file.path)
                #expect(abs(doc.duration - duration) < 1e-9)
                let mismatch = transcriptMismatch(Transcript(text: doc.text, words: doc.words), transcript)
                #expect(mismatch == nil, "\(file.lastPathComponent): CLI vs library: \(mismatch ?? "")")
                #expect(doc.text == doc.words.map(\.text).joined(separator: " "))
                #expect(!doc.words.isEmpty, "\(file.lastPathComponent): no words")
                for w in doc.words {
                    // A word's last frame may run into the final, partly padded encoder frame: its time is
                    // clamped to the audio's end.
                    // (JSON times are rounded to the millisecond: half of one past the end at most.)
                    #expect(0 <= w.start && w.start <= w.end && w.end <= doc.duration + 0.0005, "\(w) in \(doc.duration) s")
                    #expect((0...1).contains(w.confidence), "\(w)")
                }
                #expect(zip(doc.words, doc.words.dropFirst()).allSatisfy { $0.end <= $1.start })
            }
        }
    }

    /// Parses SubRip or WebVTT cues: (index or nil, start, end, text). Fails the test on a malformed block.
    func cues(_ text: String, vtt: Bool) throws -> [(index: Int?, start: Double, end: Double, text: String)] {
        var body = text
        if vtt {
            try #require(body.hasPrefix("WEBVTT\n\n"), "a WebVTT file starts with 'WEBVTT' and a blank line")
            body.removeFirst("WEBVTT\n\n".count)
        }
        let sep = vtt ? "." : ","
        let pattern = try Regex("^(\\d\\d):(\\d\\d):(\\d\\d)\\\(sep)(\\d\\d\\d) --> (\\d\\d):(\\d\\d):(\\d\\d)\\\(sep)(\\d\\d\\d)$")
        var out: [(index: Int?, start: Double, end: Double, text: String)] = []
        for block in body.components(separatedBy: "\n\n") where !block.isEmpty {
            var blockLines = block.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if blockLines.last == "" { blockLines.removeLast() }
            var index: Int?
            if !vtt { index = Int(blockLines.removeFirst()) }
            try #require(blockLines.count == 2, "cue block '\(block)'")
            let m = try #require(try pattern.wholeMatch(in: blockLines[0]), "timing line '\(blockLines[0])'")
            func seconds(_ i: Int) -> Double {
                let v = (i..<(i + 4)).map { Double(m.output[$0].substring!)! }
                return v[0] * 3600 + v[1] * 60 + v[2] + v[3] / 1000
            }
            out.append((index, seconds(1), seconds(5), blockLines[1]))
        }
        return out
    }

    @Test(arguments: ["srt", "vtt"])
    func transcribeSubtitlesAreWellFormed(format: String) throws {
        try withFixture("subtitles\(format)") { f in
            // Pauses of 1.2 s exceed the 0.8 s that splits cues, so each recognised word is its own cue.
            let file = try f.sentence(["yes", "down", "right"], gap: 1.2, name: "pauses.wav")
            let r = try f.run(["transcribe", "--model", f.model.path, "--format", format, file.path])
            #expect(r.status == 0, "\(r.stderr)")
            let parsed = try cues(r.stdout, vtt: format == "vtt")
            let (transcript, duration) = try f.expected(file)
            #expect(parsed.count >= 2, "expected several cues:\n\(r.stdout)")
            #expect(parsed.map(\.text).joined(separator: " ") == transcript.text)
            if format == "srt" { #expect(parsed.map(\.index) == Array(1...parsed.count).map { $0 }, "cue numbers") }
            for (i, c) in parsed.enumerated() {
                // Milliseconds, rounded: within half of one of the audio's end.
                #expect(c.start <= c.end && c.end <= duration + 0.0005, "cue \(i): \(c.start) --> \(c.end)")
                if i > 0 { #expect(parsed[i - 1].end <= c.start, "cue \(i) starts before cue \(i - 1) ends") }
            }
        }
    }

    @Test func transcribeOutputDirWritesOneFilePerInput() throws {
        try withFixture { f in
            let files = try f.speak(["up", "no", "left"])
            let out = f.dir.appendingPathComponent("subs")
            let r = try f.run(["transcribe", "--model", f.model.path, "--format", "vtt", "--output-dir", out.path] + files.map(\.path))
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.isEmpty, "with --output-dir nothing goes to stdout: \(r.stdout)")
            let written = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
            #expect(written == files.map { $0.deletingPathExtension().lastPathComponent + ".vtt" }.sorted())
            for file in files {
                let text = try String(contentsOf: out.appendingPathComponent(file.deletingPathExtension().lastPathComponent + ".vtt"),
                                      encoding: .utf8)
                let parsed = try cues(text, vtt: true)
                #expect(parsed.map(\.text).joined(separator: " ") == (try f.expected(file)).transcript.text)
            }
            // Text and JSON files hold just their own transcript, as with one input: no FILE<TAB> prefix,
            // no JSON Lines.
            let plain = f.dir.appendingPathComponent("plain"), json = f.dir.appendingPathComponent("json")
            for (format, folder) in [("text", plain), ("json", json)] {
                let r = try f.run(["transcribe", "--model", f.model.path, "--format", format, "--output-dir", folder.path] + files.map(\.path))
                #expect(r.status == 0, "\(r.stderr)")
            }
            for file in files {
                let name = file.deletingPathExtension().lastPathComponent
                let expected = try f.expected(file).transcript.text
                #expect(try String(contentsOf: plain.appendingPathComponent(name + ".txt"), encoding: .utf8) == expected + "\n")
                let one = try String(contentsOf: json.appendingPathComponent(name + ".json"), encoding: .utf8)
                let single = try f.run(["transcribe", "--model", f.model.path, "--format", "json", file.path])
                #expect(one == single.stdout, "--output-dir's JSON differs from a single input's")
            }

            // Two inputs with the same base name would write the same output file: refused up front.
            let other = f.dir.appendingPathComponent("other")
            try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
            let twin = other.appendingPathComponent(files[0].lastPathComponent)
            try FileManager.default.copyItem(at: files[1], to: twin)
            let out2 = f.dir.appendingPathComponent("subs2")
            let clash = try f.run(["transcribe", "--model", f.model.path, "--output-dir", out2.path, files[0].path, twin.path])
            #expect(clash.status != 0)
            #expect(clash.stderrLines.count == 1 && clash.stderr.contains(files[0].path) && clash.stderr.contains(twin.path),
                    "expected one line naming both inputs:\n\(clash.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out2.path), "nothing should be written")

            // Into the audio's own folder, where a hand-written transcript (for earshot adapt) has the
            // output's name: refused before any work, naming it, unless --overwrite.
            let mine = files[1].deletingPathExtension().appendingPathExtension("txt")
            try Data("my own words\n".utf8).write(to: mine)
            let folder = files[1].deletingLastPathComponent().path
            let refused = try f.run(["transcribe", "--model", f.model.path, "--output-dir", folder] + files.map(\.path))
            #expect(refused.status != 0 && refused.stderrLines.count == 1 && refused.stderr.contains(mine.path)
                    && refused.stderr.contains("--overwrite"), "\(refused.stderr)")
            #expect(try String(contentsOf: mine, encoding: .utf8) == "my own words\n")
            for file in [files[0], files[2]] {
                #expect(!FileManager.default.fileExists(atPath: file.deletingPathExtension().appendingPathExtension("txt").path), "nothing should be written")
            }
            let replaced = try f.run(["transcribe", "--model", f.model.path, "--output-dir", folder, "--overwrite"] + files.map(\.path))
            #expect(replaced.status == 0, "\(replaced.stderr)")
            #expect(try String(contentsOf: mine, encoding: .utf8) == (try f.expected(files[1])).transcript.text + "\n")
        }
    }

    @Test func transcribeParallelJobsKeepInputOrder() throws {
        try withFixture { f in
            // Long and short files interleaved, so with two workers later files often finish first.
            let words = try f.speak(EndToEndModel.words)
            let long = try f.sentence(["left", "right", "left", "right", "up", "down"], gap: 1.0, name: "long.wav")
            let inputs = [long, words[0], words[1], long, words[2], words[3], words[4], long, words[5]]
            let parallel = try f.run(["transcribe", "--model", f.model.path, "--jobs", "2"] + inputs.map(\.path))
            let serial = try f.run(["transcribe", "--model", f.model.path, "--jobs", "1"] + inputs.map(\.path))
            #expect(parallel.status == 0 && serial.status == 0, "\(parallel.stderr)\(serial.stderr)")
            let got = lines(parallel.stdout)
            #expect(got.map { $0.split(separator: "\t", omittingEmptySubsequences: false)[0] }.map(String.init) == inputs.map(\.path))
            #expect(parallel.stdout == serial.stdout)
        }
    }

    /// sclite's total counts and error rate for trn files (sclite's `rsum` and `sum` reports).
    func sclite(ref: URL, hyp: URL, scratch: URL) throws -> (counts: ErrorCounts, percent: Double) {
        let r = try runProcess(try sclitePath(), ["-r", ref.path, "trn", "-h", hyp.path, "trn", "-i", "spu_id",
                                                  "-o", "sum", "rsum", "stdout"], scratch: scratch)
        try #require(r.status == 0, "sclite failed: \(r.stderr)")
        var counts: ErrorCounts?, percent: Double?
        for line in lines(r.stdout) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "|" }).map(String.init)
            if fields.first == "Sum", fields.count == 9, let n = Optional(fields[1...].compactMap { Int($0) }), n.count == 8 {
                // | Sum | #Snt #Wrd | Corr Sub Del Ins Err S.Err |
                counts = ErrorCounts(hits: n[2], substitutions: n[3], deletions: n[4], insertions: n[5])
            } else if fields.first == "Sum/Avg", fields.count == 9 {
                // | Sum/Avg | #Snt #Wrd | Corr% Sub% Del% Ins% Err% S.Err% |
                percent = Double(fields[7])
            }
        }
        return (try #require(counts, "no Sum line in:\n\(r.stdout)"), try #require(percent, "no Sum/Avg line in:\n\(r.stdout)"))
    }

    @Test func evalWERAgreesWithSclite() throws {
        try withFixture { f in
            // Held-out renderings of known words, words the model never heard, and sentences, so the
            // alignment has substitutions, deletions and insertions to count.
            var entries: [(file: URL, text: String)] = []
            for (url, word) in zip(try f.speak(EndToEndModel.words, voice: "en-029", pitch: 70), EndToEndModel.words) { entries.append((url, word)) }
            for (url, word) in zip(try f.speak(["stop", "go", "seven", "zebra"], voice: "en"), ["stop", "go", "seven", "zebra"]) {
                entries.append((url, word))
            }
            entries.append((try f.sentence(["up", "up", "down"], gap: 0.4, name: "three.wav"), "up up down"))
            // References that do not match the audio, for insertions (two words said, one expected) and
            // deletions (one word said, three expected).
            entries.append((try f.sentence(["right", "no"], gap: 0.5, name: "two.wav"), "right"))
            entries.append((try f.speak(["left"], voice: "en-gb-scotland", pitch: 70)[0], "yes left down"))
            let manifest = f.dir.appendingPathComponent("test.tsv"), hypsURL = f.dir.appendingPathComponent("hyps.tsv")
            try writeManifest(entries, to: manifest)

            let r = try f.run(["eval", manifest.path, "--model", f.model.path, "--hyps", hypsURL.path])
            #expect(r.status == 0, "\(r.stderr)")
            let werLine = try #require(lines(r.stdout).first { $0.hasPrefix("WER:") }, "no WER line in:\n\(r.stdout)")
            let m = try #require(try Regex("^WER: +([0-9.]+)%  \\((\\d+) sub, (\\d+) del, (\\d+) ins / (\\d+) words\\)$").wholeMatch(in: werLine),
                                 "WER line '\(werLine)'")
            let percent = Double(m.output[1].substring!)!
            let n = (2...5).map { Int(m.output[$0].substring!)! }

            // Independent trn files written here from the manifest and the hypotheses the CLI wrote.
            let hyps = try Manifest.read(from: hypsURL)
            try #require(hyps.entries.count == entries.count)
            let ref = f.dir.appendingPathComponent("ref.trn"), hyp = f.dir.appendingPathComponent("hyp.trn")
            func trn(_ texts: [String]) -> String { texts.enumerated().map { "\($1) (spk-\(String(format: "%03d", $0)))\n" }.joined() }
            try Data(trn(entries.map(\.text)).utf8).write(to: ref)
            try Data(trn(hyps.entries.map(\.text)).utf8).write(to: hyp)
            let truth = try sclite(ref: ref, hyp: hyp, scratch: f.dir)
            print("earshot eval: \(werLine); sclite: \(truth.counts), \(truth.percent)%")

            #expect(n == [truth.counts.substitutions, truth.counts.deletions, truth.counts.insertions, truth.counts.referenceLength],
                    "earshot: \(werLine); sclite: \(truth.counts)")
            // sclite prints one decimal, earshot two.
            #expect(abs(percent - truth.percent) <= 0.05 + 1e-9, "earshot \(percent)% vs sclite \(truth.percent)%")
            #expect(percent > 0 && percent < 100, "the test set should have some errors, not all: \(werLine)")
            // The hypotheses file is the library's output, in manifest order.
            for (e, h) in zip(entries, hyps.entries) {
                #expect(h.text == (try f.expected(e.file)).transcript.text, "\(e.file.lastPathComponent)")
            }
        }
    }

    @Test func modelInfoPrintsParameterCount() throws {
        try withFixture { f in
            let r = try f.run(["model", "info", f.model.path])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(lines(r.stdout).contains("parameters:    \(f.tiny.trained.parameterCount)"), "\(r.stdout)")
            #expect(f.tiny.trained.parameterCount > 10_000)
        }
    }

    /// `model average` writes a loadable model recording its inputs, and refuses what is not a
    /// snapshot of the same run (here a model with a domain decoding), naming that file.
    @Test func modelAverageWritesTheMeanAndRefusesAForeignModel() throws {
        try withFixture { f in
            let copy = f.dir.appendingPathComponent("copy.safetensors"), out = f.dir.appendingPathComponent("avg.safetensors")
            try FileManager.default.copyItem(at: f.model, to: copy)
            let r = try f.run(["model", "average", "--out", out.path, f.model.path, copy.path])
            #expect(r.status == 0, "\(r.stderr)")
            let averaged = try ModelFile.load(path: out.path)
            #expect(averaged.parameters == f.tiny.trained.parameters, "the mean of a model and its copy is the model")
            guard case .array(let sources)? = averaged.description.provenance["averaged_from"] else {
                Issue.record("no averaged_from in \(averaged.description.provenance)"); return
            }
            #expect(sources.count == 2)
            #expect(!r.stdout.contains("word timing"), "\(r.stdout)")

            // A calibrated input averaged with an uncalibrated one: the mean has no calibration, and says so.
            var calibrated = try ModelFile.load(path: f.model.path)
            calibrated.description.timing = WordTiming(startDelayMs: 150, endDelayMs: 60)
            let cal = f.dir.appendingPathComponent("cal.safetensors")
            try calibrated.save(path: cal.path)
            let mixed = try f.run(["model", "average", "--out", out.path, f.model.path, cal.path])
            #expect(mixed.status == 0 && mixed.stdout.contains("word timing: the inputs' calibrations differ") && mixed.stdout.contains("model calibrate"), "\(mixed.stdout)")
            #expect(try ModelFile.load(path: out.path).description.timing == nil)
            // An --out that cannot be written is refused before any model is read.
            let folder = try f.run(["model", "average", "--out", f.dir.path, f.model.path, cal.path])
            #expect(folder.status == 1 && folder.stderr.contains("is a folder"), "\(folder.stderr)")

            let text = f.dir.appendingPathComponent("words.txt")
            try Data("yes\nno\n".utf8).write(to: text)
            let domain = f.dir.appendingPathComponent("domain.safetensors")
            #expect(try f.run(["adapt", "--base", f.model.path, "--text", text.path, "--out", domain.path]).status == 0)
            let refused = try f.run(["model", "average", "--out", f.dir.appendingPathComponent("no.safetensors").path, f.model.path, domain.path])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains(domain.path) && refused.stderr.contains("another domain decoding"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: f.dir.appendingPathComponent("no.safetensors").path))
            let one = try f.run(["model", "average", "--out", out.path, f.model.path])
            #expect(one.status != 0 && one.stderr.contains("at least two"), "\(one.stderr)")
        }
    }

    /// `model calibrate` stores the medians (to the millisecond) of what the library measures on each
    /// recording, and refuses, writing nothing, when too few recordings have quiet edges to measure.
    @Test func modelCalibrateStoresTheMedianDelaysAndRefusesUnmeasurableData() throws {
        try withFixture { f in
            let recognizer = try Recognizer(model: f.tiny.trained)
            let voices = ["en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp"]
            var padded: [URL] = [], tight: [URL] = []
            for voice in voices {
                for url in try f.speak(EndToEndModel.words, voice: voice) {
                    // espeak-ng speaks from the first sample: as it is, a recording has no quiet onset.
                    let samples = try AudioFile.read(path: url.path, targetSampleRate: 16000).samples
                    let silence = [Float](repeating: 0, count: 4800)
                    let out = f.dir.appendingPathComponent("padded-" + url.lastPathComponent)
                    try AudioWriter.write(silence + samples + silence, sampleRate: 16000, to: out.path)
                    padded.append(out); tight.append(url)
                }
            }
            func manifest(_ name: String, _ urls: [URL]) throws -> URL {
                let m = f.dir.appendingPathComponent(name)
                try Data(urls.map { "\($0.lastPathComponent)\tignored\n" }.joined().utf8).write(to: m)
                return m
            }
            var starts: [Double] = [], ends: [Double] = []
            for url in padded {
                let samples = try AudioFile.read(path: url.path, targetSampleRate: recognizer.sampleRate).samples
                if case .delays(let s, let e) = WordTimingCalibration.measure(samples, with: recognizer) { starts.append(s); ends.append(e) }
            }
            try #require(starts.count >= 20, "the tiny model must hear most of the \(padded.count) words")

            let out = f.dir.appendingPathComponent("calibrated.safetensors")
            let r = try f.run(["model", "calibrate", "--data", try manifest("padded.tsv", padded).path, "--out", out.path, f.model.path])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("measured on \(starts.count) of \(padded.count) recordings"), "\(r.stdout)")
            let calibrated = try ModelFile.load(path: out.path)
            // Within a frame: the command recognises in parallel, and BLAS may round another way.
            let timing = try #require(calibrated.description.timing)
            let frameMs = 1000 * recognizer.frameDuration + 1
            #expect(abs(timing.startDelayMs - WordTimingCalibration.median(starts)! * 1000) <= frameMs, "\(timing)")
            #expect(abs(timing.endDelayMs - WordTimingCalibration.median(ends)! * 1000) <= frameMs, "\(timing)")
            #expect(timing.startDelayMs == timing.startDelayMs.rounded() && timing.endDelayMs == timing.endDelayMs.rounded())
            #expect(calibrated.parameters == f.tiny.trained.parameters)
            guard case .object(let record)? = calibrated.description.provenance["timing_calibration"] else {
                Issue.record("no timing_calibration in \(calibrated.description.provenance)"); return
            }
            #expect(record["recordings"] == .number(Double(starts.count)))

            let refusedOut = f.dir.appendingPathComponent("never.safetensors")
            let refused = try f.run(["model", "calibrate", "--data", try manifest("tight.tsv", tight).path, "--out", refusedOut.path, f.model.path])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("only 0 of \(tight.count) recordings could be measured (\(tight.count) without 50 ms of quiet before the speech and 150 ms after it")
                    && refused.stderr.contains("at least 20"), "\(refused.stderr)")
            #expect(!FileManager.default.fileExists(atPath: refusedOut.path))
            // Too short a manifest is refused before any recognition.
            let few = try f.run(["model", "calibrate", "--data", try manifest("few.tsv", Array(padded.prefix(5))).path, "--out", refusedOut.path, f.model.path])
            #expect(few.status == 1 && few.stderr.contains("5 recordings; at least 20 are needed"), "\(few.stderr)")
            #expect(!few.stderr.contains("calibrating"), "refused before any recognition: \(few.stderr)")
            // So are an output folder that does not exist and a folder given as the manifest.
            let nowhere = f.dir.appendingPathComponent("no/such/cal.safetensors").path
            let lost = try f.run(["model", "calibrate", "--data", try manifest("padded2.tsv", padded).path, "--out", nowhere, f.model.path])
            #expect(lost.status == 1 && lost.stderrLines == ["earshot: --out \(nowhere): the folder \(f.dir.appendingPathComponent("no/such").path) does not exist"], "\(lost.stderr)")
            let folder = try f.run(["model", "calibrate", "--data", f.dir.path, "--out", refusedOut.path, f.model.path])
            #expect(folder.status == 1 && folder.stderr.contains("is a folder; give a manifest file"), "\(folder.stderr)")
        }
    }

    @Test func adaptTextStoresADomainLMThatModelInfoShowsAndTranscribeUses() throws {
        try withFixture { f in
            let text = f.dir.appendingPathComponent("phrases.txt")
            try Data("yes\nno\nyes no\n".utf8).write(to: text)
            let domain = f.dir.appendingPathComponent("yes-no.safetensors")
            let made = try f.run(["adapt", "--base", f.model.path, "--text", text.path, "--vocabulary", "closed", "--out", domain.path])
            #expect(made.status == 0, "\(made.stderr)")
            let info = try f.run(["model", "info", domain.path])
            #expect(info.status == 0, "\(info.stderr)")
            #expect(info.stdout.contains("domain decoding (earshot adapt --text)"), "\(info.stdout)")
            #expect(info.stdout.contains("vocabulary:    closed"), "\(info.stdout)")
            // A closed yes/no vocabulary is applied by default: whatever is said, only those words come out.
            let audio = try f.speak(["up", "left"])
            for file in audio {
                let r = try f.run(["transcribe", "--model", domain.path, file.path])
                #expect(r.status == 0, "\(r.stderr)")
                let words = r.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
                #expect(words.allSatisfy { ["yes", "no"].contains($0) }, "\(file.lastPathComponent): \(r.stdout)")
            }
        }
    }

    @Test func brokenOrMissingModelFailsWithOneLineNamingTheFile() throws {
        try withFixture { f in
            let bytes = try Data(contentsOf: f.model)
            let truncated = f.dir.appendingPathComponent("truncated.safetensors")
            try bytes.prefix(bytes.count / 2).write(to: truncated)
            let missing = f.dir.appendingPathComponent("no-such-model.safetensors")
            let audio = try f.speak(["yes"])[0]
            let manifest = f.dir.appendingPathComponent("one.tsv")
            try writeManifest([(audio, "yes")], to: manifest)
            let runs = [
                ("model info on a truncated file", truncated, try f.run(["model", "info", truncated.path])),
                ("transcribe with a truncated model", truncated, try f.run(["transcribe", "--model", truncated.path, audio.path])),
                ("transcribe with a missing model", missing, try f.run(["transcribe", "--model", missing.path, audio.path])),
                ("eval with a missing model", missing, try f.run(["eval", "--model", missing.path, manifest.path])),
            ]
            for (what, file, r) in runs {
                #expect(r.status != 0, "\(what): exit status 0")
                #expect(r.stdout.isEmpty, "\(what): stdout '\(r.stdout)'")
                let errorLines = r.stderrLines
                #expect(errorLines.count == 1 && errorLines.allSatisfy { $0.contains(file.path) },
                        "\(what): expected one line naming \(file.lastPathComponent), got:\n\(r.stderr)")
            }
        }
    }

    @Test func trainRejectsUnknownKeysAndBadTOML() throws {
        let earshot = try earshotExecutable()
        try withTemporaryDirectory { dir in
            let unknown = dir.appendingPathComponent("unknown.toml")
            try Data("[data]\ntrain = \"train.tsv\"\n\n[optimizer]\nlearning_rat = 0.1\n".utf8).write(to: unknown)
            let bad = dir.appendingPathComponent("bad.toml")
            try Data("[model]\nchannels = 64\nblocks = = 2\nkernel = 5\n".utf8).write(to: bad)
            let section = dir.appendingPathComponent("section.toml")
            try Data("[optimiser]\nlearning_rate = 0.1\n".utf8).write(to: section)

            let r1 = try runProcess(earshot, ["train", "--config", unknown.path], scratch: dir)
            #expect(r1.status != 0)
            #expect(r1.stderr.contains("learning_rat") && r1.stderr.contains(unknown.path), "\(r1.stderr)")
            let r2 = try runProcess(earshot, ["train", "--config", bad.path], scratch: dir)
            #expect(r2.status != 0)
            #expect(r2.stderr.contains("\(bad.path):3"), "the error should name line 3: \(r2.stderr)")
            let r3 = try runProcess(earshot, ["train", "--config", section.path], scratch: dir)
            #expect(r3.status != 0)
            #expect(r3.stderr.contains("optimiser"), "\(r3.stderr)")
            // Nothing was trained: no run folder appeared next to the configs.
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasPrefix(".") }.sorted()
                    == ["bad.toml", "section.toml", "unknown.toml"])
        }
    }

    @Test func benchPrintsStagesAndPeakRSS() throws {
        try withFixture { f in
            let audio = f.dir.appendingPathComponent("audio")
            try FileManager.default.createDirectory(at: audio, withIntermediateDirectories: true)
            try synthesize(["yes", "down", "left"].map { Rendering(text: $0, voice: "en", speed: 150) }, into: audio)
            let r = try f.run(["bench", "--model", f.model.path, "--audio", audio.path])
            #expect(r.status == 0, "\(r.stderr)")
            let out = lines(r.stdout)
            #expect(out.contains { $0.hasPrefix("audio:") && $0.contains("3 files") }, "\(r.stdout)")
            for stage in ["read+resample", "frontend", "encoder", "decoder", "recognition", "end to end"] {
                let row = out.first { $0.hasPrefix(stage + " ") }
                let rtf = row.flatMap { $0.dropFirst(stage.count).split(separator: " ").first }.flatMap { Double($0) }
                #expect(rtf.map { $0 >= 0 && $0.isFinite } == true, "no real-time factor for \(stage) in:\n\(r.stdout)")
            }
            let rss = out.first { $0.hasPrefix("peak RSS:") }
            let mb = rss.flatMap { $0.split(separator: " ").dropFirst(2).first }.flatMap { Double($0) }
            #expect(mb.map { $0 > 1 } == true, "no peak RSS in:\n\(r.stdout)")
            // Transcribe's pipeline over the same audio: said so, the same audio seconds, every stage timed.
            let t = try f.run(["bench", "--model", f.model.path, "--audio", audio.path, "--as-transcribe"], environment: ["EARSHOT_LM": ""])
            #expect(t.status == 0, "\(t.stderr)")
            let tout = lines(t.stdout)
            #expect(tout.contains { $0.hasPrefix("decoding:") && $0.contains("split at pauses") }, "\(t.stdout)")
            #expect(tout.first { $0.hasPrefix("audio:") } == out.first { $0.hasPrefix("audio:") }, "\(t.stdout)")
            let encoder = tout.first { $0.hasPrefix("encoder ") }.flatMap { $0.dropFirst("encoder".count).split(separator: " ").first }.flatMap { Double($0) }
            #expect(encoder.map { $0 > 0 && $0.isFinite } == true, "\(t.stdout)")
        }
    }

    /// Run by name from PATH (argv[0] is then a bare "earshot") in a folder far from the build, transcribe
    /// still finds the shipped model beside its binary (the build tree's models/): the lookup starts from
    /// the program's own file, not from argv[0] resolved against the working folder.
    @Test func transcribeRunFromPathFindsTheModelBesideItsBinary() throws {
        try withFixture { f in
            let audio = try f.speak(["yes"])[0].path
            let elsewhere = f.dir.appendingPathComponent("elsewhere")
            try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
            let bin = URL(fileURLWithPath: f.earshot).deletingLastPathComponent().path
            let path = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
            let r = try runProcess("/bin/sh", ["-c", "exec earshot transcribe \"$0\"", audio], scratch: f.dir, directory: elsewhere,
                                   environment: ["PATH": path])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stderr.isEmpty, "\(r.stderr)")
        }
    }
}
